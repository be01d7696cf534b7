"""Library warnings name the user's line, wherever in the library they arise."""

import threading
import warnings

from skltransfer.exceptions import SkltransferWarning, warn_at_caller


def test_a_warning_with_no_user_frame_names_the_library_line():
    # A worker thread started by the library: no frame of the user's code.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        thread = threading.Thread(
            target=warn_at_caller, args=("from a worker", SkltransferWarning)
        )
        thread.start()
        thread.join()
    assert record[0].filename == threading.__file__  # not "sys", past the stack
