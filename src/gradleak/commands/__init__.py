"""Sub-commands that live in their own modules (each defines ``register(sub)``); found by
:func:`gradleak.cli.command_modules`, so adding one touches no shared file."""
