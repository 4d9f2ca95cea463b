from edgevid.cli import main

raise SystemExit(main())
