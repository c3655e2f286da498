"""The ``queuewatch`` command line. Each ``cmd_*.py`` module adds its subcommands."""
