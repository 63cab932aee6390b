"""The `teachbox` command line: train, compare, health, evaluate, predict, weights and serve."""
