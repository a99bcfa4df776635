"""``python -m keras_spp_cli COMMAND [ARGS]``, the same as ``keras-spp COMMAND [ARGS]``."""

from keras_spp_cli.cli import main

raise SystemExit(main())
