"""CLI commands (owned by the vit work; see helpers/cli.py)."""


def register(sub) -> None:
    """Add this module's subcommands to the argparse sub-parsers sub."""
