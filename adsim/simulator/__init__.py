"""The simulator: legal actions, request streams (replay + ARR) and batched scoring of SID paths."""
