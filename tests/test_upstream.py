"""mmsniper/_upstream.py names every private mmengine attribute the package
root relies on; a change in mmengine is reported naming it."""
import mmengine.config.utils as config_utils
import mmengine.registry as registry_module
import pytest

from mmsniper import _upstream


def test_pinned_mmengine_has_everything():
    assert _upstream.check_upstream() == []


def test_registry_without_locations_is_named(monkeypatch):

    class Registry:  # a future mmengine's, without the private attributes

        def __init__(self, name, locations=()):
            self.name = name

    monkeypatch.setattr(registry_module, 'Registry', Registry)
    problems = _upstream.check_upstream()
    assert len(problems) == 2
    assert 'mmengine.registry.Registry._locations' in problems[0]
    assert 'mmengine.registry.Registry._imported' in problems[1]
    assert all('mmsniper/_upstream.py' in p for p in problems)


def test_missing_config_table_is_named(monkeypatch):
    monkeypatch.delattr(config_utils, 'MODULE2PACKAGE')
    problems = _upstream.check_upstream()
    assert len(problems) == 1
    assert 'mmengine.config.utils.MODULE2PACKAGE' in problems[0]


def test_registration_hook_fails_clearly(monkeypatch):

    class Registry:

        def __init__(self, name, locations=()):
            self.name = name

    class FakeRegistryModule:
        pass

    for name in _upstream.REGISTRIES:
        setattr(FakeRegistryModule, name, Registry(name))
    monkeypatch.setattr(registry_module, 'Registry', Registry)
    with pytest.raises(RuntimeError,
                       match=r'mmengine\.registry\.Registry\._locations'):
        _upstream.register_lazily(FakeRegistryModule)


def test_hooks_are_installed():
    import mmengine.config.config as config_module

    from mmdet.registry import MODELS
    assert _upstream.REGISTRATION in MODELS._locations
    assert config_utils.MODULE2PACKAGE['mmsniper'] == 'mmsniper'
    assert getattr(config_module.get_installed_path, '_mmsniper', False)
