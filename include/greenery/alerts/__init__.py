"""Slack: building the messages and delivering them."""
