"""Post-training of the HHD policy in the simulator: DPO, HEPO (with ARR), GRPO."""
