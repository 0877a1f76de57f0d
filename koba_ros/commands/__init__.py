"""Subcommands of `koba`, one per file (see koba_ros/cli.py for the contract)."""
