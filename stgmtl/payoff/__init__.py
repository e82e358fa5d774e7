"""The payoff harness."""
