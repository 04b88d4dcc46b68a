"""Send a window of datagrams to one address with one system call.

A windowed transfer (RFC 7440) answers each ACK with up to ``windowsize``
DATA packets.  Sent one ``sendto`` at a time, each pays the Python call and
the system call entry; Linux's ``sendmmsg(2)`` takes them all at once.  The
standard library has no binding for it, so it is called through ``ctypes``
with the message headers preallocated per destination: per window only the
buffer pointers and lengths change.

Where ``sendmmsg`` is missing (not Linux, no libc symbol) or the address
cannot be encoded, ``BatchSender`` falls back to one ``sendto`` per datagram;
both paths send the same bytes in the same order and, like any datagram,
drop what the kernel refuses (the transfer's timer retransmits); neither
blocks, also on a socket in blocking mode.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from collections.abc import Sequence

__all__ = ["BatchSender", "sendmmsg_available"]


class _IoVec(ctypes.Structure):
    # iov_base as c_char_p: assigning a bytes object stores a pointer to its
    # buffer (no copy) and keeps the object alive while the vector holds it.
    _fields_ = [("iov_base", ctypes.c_char_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IoVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _load_sendmmsg():
    try:
        # The C library the interpreter already links (dlopen(NULL)): ctypes.util.find_library
        # would run ``ldconfig -p`` in a subprocess at every start.
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_sendmmsg = _load_sendmmsg()


def sendmmsg_available() -> bool:
    return _sendmmsg is not None


def _sockaddr(family: int, address: tuple) -> bytes:
    """``struct sockaddr_in``/``sockaddr_in6`` for a Python socket address tuple."""
    host, port = address[0], address[1]
    if family == socket.AF_INET:
        return struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_pton(socket.AF_INET, host))
    host, _, scope_name = host.partition("%")
    flowinfo = address[2] if len(address) > 2 else 0
    scope = address[3] if len(address) > 3 else 0
    if scope_name and not scope:
        scope = int(scope_name) if scope_name.isdigit() else socket.if_nametoindex(scope_name)
    return struct.pack("=HHI16sI", socket.AF_INET6, socket.htons(port), socket.htonl(flowinfo),
                       socket.inet_pton(socket.AF_INET6, host), scope)


class BatchSender:
    """Sends batches of datagrams from ``sock`` to ``address``; at most ``batch`` per system call."""

    __slots__ = ("_sock", "_address", "_fd", "_name", "_iov", "_msgs", "_msgs_at", "_batch")

    def __init__(self, sock: socket.socket, address: tuple, batch: int, *, use_sendmmsg: bool = True) -> None:
        self._sock = sock
        self._address = address
        self._fd = sock.fileno()
        self._batch = max(1, batch)
        self._name = None
        if use_sendmmsg and _sendmmsg is not None and self._batch > 1:
            try:
                name = _sockaddr(sock.family, address)
            except (OSError, ValueError, TypeError, struct.error):
                name = None             # sendto copes with (or reports) it
            if name is not None:
                self._prepare(name)

    @property
    def batched(self) -> bool:
        """Whether ``send`` uses ``sendmmsg``."""
        return self._name is not None

    def _prepare(self, name: bytes) -> None:
        self._name = ctypes.create_string_buffer(name, len(name))
        self._iov = (_IoVec * self._batch)()
        self._msgs = (_MMsgHdr * self._batch)()
        for i in range(self._batch):
            header = self._msgs[i].msg_hdr
            header.msg_name = ctypes.addressof(self._name)
            header.msg_namelen = len(name)
            header.msg_iov = ctypes.pointer(self._iov[i])
            header.msg_iovlen = 1
        self._msgs_at = ctypes.addressof(self._msgs)

    def send(self, datagrams: Sequence[bytes]) -> None:
        """Send ``datagrams`` in order; one the kernel refuses is lost like any datagram."""
        if self._name is None or len(datagrams) < 2:
            self._send_each(datagrams)
            return
        iov = self._iov
        batch = self._batch
        start = 0
        total = len(datagrams)
        while start < total:
            count = min(batch, total - start)
            for i in range(count):
                datagram = datagrams[start + i]
                if type(datagram) is not bytes:        # c_char_p points only into bytes
                    self._send_each(datagrams[start:])
                    return
                vector = iov[i]
                vector.iov_base = datagram
                vector.iov_len = len(datagram)
            sent = _sendmmsg(self._fd, self._msgs_at, count, socket.MSG_DONTWAIT)
            if sent < 0:
                if ctypes.get_errno() == errno.EINTR:
                    continue
                sent = 0
            # sendmmsg stops at the first datagram it cannot send: skip that
            # one (lost, as a failed sendto would be) and go on with the rest.
            start += sent if sent == count else sent + 1

    def _send_each(self, datagrams: Sequence[bytes]) -> None:
        sendto = self._sock.sendto
        address = self._address
        for datagram in datagrams:
            try:
                sendto(datagram, socket.MSG_DONTWAIT, address)
            except OSError:
                pass        # lost like any datagram; the timer retransmits
