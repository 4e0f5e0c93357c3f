"""The collector pause nests, and resumes collection only if it was on before."""

import gc

from modelpilot.gc_pause import gc_paused


def test_pauses_nest_and_the_outermost_resumes() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_collection_resumes_when_the_parse_raises() -> None:
    try:
        with gc_paused():
            raise ValueError("bad answer")
    except ValueError:
        pass
    assert gc.isenabled()
