"""mab-hook's commands, one module each: `gate` (the pre-push hook, and `mab-hook --all` by
hand), `doctor`, `verify`, `build`, `publish`, `install`, `status`, `gc`, `report`.

Each has `parser()` (its command line), `options(args)` (the parsed line as its typed
`Options`) and `run(options, env, stdin, printer) -> int`. `mab_hook.cli` wires them; a command
never imports another one: what two commands share is a module below them.
"""

COMMANDS = ("doctor", "install", "verify", "build", "publish", "status", "gc", "report")  # `mab-hook COMMAND`
