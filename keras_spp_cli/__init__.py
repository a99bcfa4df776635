"""The ``keras-spp`` command: one entry point to the recipes and the export tools.

``keras-spp COMMAND [ARGS]`` runs ``recipes.<module>`` or ``export.<module>`` with
``ARGS``, as ``python -m recipes.<module> ARGS`` does from a checkout
(``keras_spp_cli.cli.COMMANDS`` names them). The wheel ships ``recipes/`` and
``export/`` inside this package, under ``keras_spp_cli/_commands/``, so that
site-packages gains no top-level modules with names as generic as ``recipes`` and
``export``; only the command's own process puts them on its path.
"""
