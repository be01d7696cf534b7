"""Process-wide settings (_config.py)."""

import threading

import skltransfer


def test_config_context_changes_settings_inside_the_block_only():
    assert skltransfer.get_config() == {"pickle_weights": False}
    with skltransfer.config_context(pickle_weights=True):
        assert skltransfer.get_config()["pickle_weights"] is True
        with skltransfer.config_context(pickle_weights=None):  # left as it is
            assert skltransfer.get_config()["pickle_weights"] is True
    assert skltransfer.get_config()["pickle_weights"] is False


def test_settings_are_per_thread_and_get_config_is_a_copy():
    seen = []
    try:
        skltransfer.set_config(pickle_weights=True)
        skltransfer.get_config()["pickle_weights"] = False  # a copy: no effect
        assert skltransfer.get_config()["pickle_weights"] is True
        thread = threading.Thread(
            target=lambda: seen.append(skltransfer.get_config()["pickle_weights"])
        )
        thread.start()
        thread.join()
    finally:
        skltransfer.set_config(pickle_weights=False)
    assert seen == [False]  # another thread starts from the defaults
