"""Sub-commands that live in their own modules; listed in :data:`gradleak.cli.COMMAND_MODULES`."""
