from mab_hook.cli import entry

raise SystemExit(entry())
