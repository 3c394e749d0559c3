"""Enterprises, their validated and derived attributes, and the code tables behind them."""
