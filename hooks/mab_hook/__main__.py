from mab_hook.cli import main

raise SystemExit(main())
