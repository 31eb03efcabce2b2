# cython: language_level=3, boundscheck=False, wraparound=False
"""The transport's hot socket calls straight into libzmq (an optional compiled accelerator).

pyzmq's ``send``/``recv``/``getsockopt`` wrap each libzmq call in Python objects: an enum built
for every ``getsockopt``, a ``Frame`` for a ``recv`` that reports "more", fork and signal checks.
On a sequential remote ask that is about a fifth of the node's own CPU. These functions make
the same libzmq calls on the same sockets (``Socket.underlying``, created, configured and
closed by pyzmq) and raise the same ``zmq.Again``/``zmq.ZMQError``.

libzmq is the one pyzmq loaded: its functions are looked up through pyzmq's extension module
(``dlsym`` on a library handle searches its dependencies too), so nothing is linked at build
time and no header is needed; that happens at import, which raises ImportError if it fails.
:mod:`runtime._zmqcalls` picks this module when it built and loads, and pure pyzmq calls
otherwise.

A socket is passed as its handle (an int), or None once the transport closed it (ENOTSOCK):
a closed handle must never reach libzmq.

Beside the socket calls, :func:`unfilled_bytes` lets the data store write a fetched bytes
payload in place as its chunks arrive (one copy, no final join); pure Python cannot make a
bytes object it then fills.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsVoidPtr

cdef extern from "Python.h":
    object PyMemoryView_FromMemory(char* mem, Py_ssize_t size, int flags)
    int PyBUF_WRITE

cdef extern from *:
    """
    #include <stdint.h>
    #include <sys/mman.h>
    /* Ask for transparent huge pages over the 2 MiB-aligned interior of [p, p + n): a fresh
       buffer of hundreds of MB then takes a few hundred page faults, not tens of thousands. */
    static void shoal_advise_huge(char* p, size_t n) {
    #ifdef MADV_HUGEPAGE
        const uintptr_t huge = (uintptr_t)1 << 21;
        uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1);
        uintptr_t end = ((uintptr_t)p + n) & ~(huge - 1);
        if (end > start) {
            madvise((void*)start, end - start, MADV_HUGEPAGE);
        }
    #endif
    }
    """
    void shoal_advise_huge(char* p, size_t n) nogil

import errno as _errno

import zmq

cdef extern from "dlfcn.h":
    void* dlopen(const char* filename, int flags)
    void* dlsym(void* handle, const char* symbol)
    int RTLD_NOW
    int RTLD_NOLOAD

# zmq_msg_t is 64 opaque, 8-byte aligned bytes in every libzmq 4.x.
ctypedef struct zmq_msg_t:
    double _[8]

ctypedef int (*f_msg_init)(zmq_msg_t*) noexcept nogil
ctypedef int (*f_msg_recv)(zmq_msg_t*, void*, int) noexcept nogil
ctypedef void* (*f_msg_data)(zmq_msg_t*) noexcept nogil
ctypedef size_t (*f_msg_size)(const zmq_msg_t*) noexcept nogil
ctypedef int (*f_msg_more)(const zmq_msg_t*) noexcept nogil
ctypedef int (*f_msg_close)(zmq_msg_t*) noexcept nogil
ctypedef int (*f_send)(void*, const void*, size_t, int) noexcept nogil
ctypedef int (*f_getsockopt)(void*, int, void*, size_t*) noexcept nogil
ctypedef int (*f_errno)() noexcept nogil

cdef f_msg_init z_msg_init = NULL
cdef f_msg_recv z_msg_recv = NULL
cdef f_msg_data z_msg_data = NULL
cdef f_msg_size z_msg_size = NULL
cdef f_msg_more z_msg_more = NULL
cdef f_msg_close z_msg_close = NULL
cdef f_send z_send = NULL
cdef f_getsockopt z_getsockopt = NULL
cdef f_errno z_errno = NULL

cdef int ZMQ_DONTWAIT = 1
cdef int ZMQ_EVENTS = 15
cdef int EAGAIN = _errno.EAGAIN
cdef int ENOTSOCK = _errno.ENOTSOCK

_Again = zmq.Again
_ZMQError = zmq.ZMQError


cdef int _fail(int err) except -1:
    if err == EAGAIN:
        raise _Again(err)
    raise _ZMQError(err)


cdef inline void* _handle(object sock) except? NULL:
    if sock is None:
        _fail(ENOTSOCK)
    return PyLong_AsVoidPtr(sock)


cdef void* _sym(void* lib, const char* name) except NULL:
    cdef void* fn = dlsym(lib, name)
    if fn == NULL:
        raise ImportError(f"libzmq symbol {name.decode()} not found")
    return fn


cdef _setup(str pyzmq_extension):
    """Find libzmq's functions through pyzmq's already loaded extension module (its path)."""
    global z_msg_init, z_msg_recv, z_msg_data, z_msg_size, z_msg_more, z_msg_close
    global z_send, z_getsockopt, z_errno
    cdef bytes path = pyzmq_extension.encode()
    cdef void* lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD)
    if lib == NULL:
        raise ImportError(f"{pyzmq_extension} is not loaded")
    z_msg_init = <f_msg_init>_sym(lib, b"zmq_msg_init")
    z_msg_recv = <f_msg_recv>_sym(lib, b"zmq_msg_recv")
    z_msg_data = <f_msg_data>_sym(lib, b"zmq_msg_data")
    z_msg_size = <f_msg_size>_sym(lib, b"zmq_msg_size")
    z_msg_more = <f_msg_more>_sym(lib, b"zmq_msg_more")
    z_msg_close = <f_msg_close>_sym(lib, b"zmq_msg_close")
    z_send = <f_send>_sym(lib, b"zmq_send")
    z_getsockopt = <f_getsockopt>_sym(lib, b"zmq_getsockopt")
    z_errno = <f_errno>_sym(lib, b"zmq_errno")


from zmq.backend.cython import _zmq as _pyzmq_extension

_setup(_pyzmq_extension.__file__)  # at import: no call can run before the lookup


def events(object sock):
    """``getsockopt(EVENTS)``: POLLIN/POLLOUT bits; processes the socket's pending commands."""
    cdef void* s = _handle(sock)
    cdef int value = 0
    cdef size_t size = sizeof(int)
    if z_getsockopt(s, ZMQ_EVENTS, &value, &size) != 0:
        _fail(z_errno())
    return value


def send(object sock, bytes data not None, int flags):
    """Send ``data`` as one message part (copied), with ``flags`` (NOBLOCK, SNDMORE)."""
    cdef void* s = _handle(sock)
    if z_send(s, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data), flags) < 0:
        _fail(z_errno())


cdef inline bytes _recv_part(void* s, int* more):
    cdef zmq_msg_t msg
    cdef int err
    z_msg_init(&msg)
    if z_msg_recv(&msg, s, ZMQ_DONTWAIT) < 0:
        err = z_errno()
        z_msg_close(&msg)
        _fail(err)
    data = PyBytes_FromStringAndSize(<char*>z_msg_data(&msg), <Py_ssize_t>z_msg_size(&msg))
    more[0] = z_msg_more(&msg)
    z_msg_close(&msg)
    return data


def recv(object sock):
    """Receive one message part without waiting: ``(data, more)``; raises Again if none."""
    cdef int more = 0
    data = _recv_part(_handle(sock), &more)
    return data, more


def recv_routed(object sock):
    """Receive a ROUTER's identity part and the part after it: ``(identity, data, more)``."""
    cdef void* s = _handle(sock)
    cdef int more = 0
    identity = _recv_part(s, &more)
    if not more:
        return identity, b"", 0
    data = _recv_part(s, &more)
    return identity, data, more


cdef Py_ssize_t HUGE_FROM = 4 << 20


def unfilled_bytes(Py_ssize_t size):
    """``(data, view)``: a new bytes object of ``size`` bytes whose contents are not yet set,
    and a writable memoryview of them, to fill before ``data`` is shown to anyone (bytes are
    immutable once shared: nothing may have hashed or read ``data`` while it is filled).
    The view does not keep ``data`` alive: keep both, and release the view once filled."""
    if size < 0:
        raise ValueError("size must be >= 0")
    cdef bytes data = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(data)
    if size >= HUGE_FROM:
        shoal_advise_huge(p, <size_t>size)
    return data, PyMemoryView_FromMemory(p, size, PyBUF_WRITE)
