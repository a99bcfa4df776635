"""setup.cfg lists its packages by hand (recipes/ and export/ ship inside
keras_spp_cli), so a new subpackage must be added there: these tests say which."""

import configparser
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHIPPED_AS = {"recipes": "keras_spp_cli._commands.recipes", "export": "keras_spp_cli._commands.export"}


def setup_cfg():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    return config


def listed(config, key):
    return [line.strip() for line in config["options"][key].splitlines() if line.strip()]


def source_packages():
    """``{installed name: source folder}`` of every folder with an ``__init__.py``."""
    found = {}
    for top in ("keras_spp", "keras_spp_cli", *SHIPPED_AS):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT).parts
            name = ".".join((SHIPPED_AS.get(parts[0], parts[0]), *parts[1:]))
            found[name] = init.parent.relative_to(ROOT).as_posix()
    return found


def test_every_package_is_listed_and_nothing_else():
    assert sorted(listed(setup_cfg(), "packages")) == sorted(source_packages())


def test_recipes_and_export_ship_inside_keras_spp_cli():
    mapping = dict(line.split(" = ") for line in listed(setup_cfg(), "package_dir"))
    assert mapping == {name: folder for folder, name in SHIPPED_AS.items()}
    assert not any(name.split(".")[0] in SHIPPED_AS for name in listed(setup_cfg(), "packages"))


def test_the_console_script_is_keras_spp():
    scripts = setup_cfg()["options.entry_points"]["console_scripts"].strip()
    assert scripts == "keras-spp = keras_spp_cli.cli:main"
