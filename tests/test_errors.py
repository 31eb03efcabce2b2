"""The error hierarchy: one base, typed subclasses, picklable RemoteError."""

from __future__ import annotations

import pickle

import pytest

from actors import errors
from actors.errors import ActorError, ActorTimeout, MessageTooLarge, RemoteError, SerializationError


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_is_an_actor_error(name: str) -> None:
    assert issubclass(getattr(errors, name), ActorError)


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_is_exported_by_the_package(name: str) -> None:
    import actors

    assert name in actors.__all__ and getattr(actors, name) is getattr(errors, name)


def test_the_data_api_is_exported() -> None:
    from actors import data

    assert data.__all__ == ["DataRef", "delete", "put"]


def test_timeout_is_also_a_timeout_error() -> None:
    assert issubclass(ActorTimeout, TimeoutError)
    assert issubclass(MessageTooLarge, SerializationError)


def test_remote_error_carries_the_remote_details_and_pickles() -> None:
    err = RemoteError("ValueError", "bad", "Traceback ...")
    assert (err.type_name, err.message, err.remote_traceback) == (
        "ValueError",
        "bad",
        "Traceback ...",
    )
    assert str(err) == "ValueError: bad"
    back = pickle.loads(pickle.dumps(err))
    assert (back.type_name, back.message, back.remote_traceback) == (
        "ValueError",
        "bad",
        "Traceback ...",
    )
