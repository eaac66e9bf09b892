"""The headless subcommands of main.py, one module each: it adds its parser and runs it with the engine."""
