"""Incremental Server-Sent Events parser: ``decode(bytes)`` then ``flush()``.

It follows the WHATWG event-stream rules that matter to LLM APIs: ``\\n``,
``\\r\\n`` and ``\\r`` line ends, several ``data:`` lines joined with ``\\n``,
``event:`` names, comments and ``id:``/``retry:`` fields ignored.
"""

from __future__ import annotations

__all__ = ["SSEDecoder", "SSEMessage"]

SSEMessage = tuple[str, str]  # (event name or "", data)


class SSEDecoder:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def decode(self, data: bytes) -> list[SSEMessage]:
        """Feed bytes; return the complete events they finish."""
        if (  # the usual read: exactly one whole one-line data event (a token's chunk)
            not self._buf
            and data.startswith(b"data: ")
            and data.find(b"\n") == len(data) - 2
            and data.endswith(b"\n\n")
            and b"\r" not in data
        ):
            return [("", data[6:-2].decode())]
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            keep_cr = buf.endswith(b"\r")  # may be the first half of a \r\n
            if keep_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buf += b"\r"
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        return _parse_blocks(buf[:end])

    def flush(self) -> list[SSEMessage]:
        """End of stream: an unterminated last event still counts."""
        buf, self._buf = self._buf.rstrip(b"\r\n"), b""
        return _parse_blocks(buf) if buf else []


def _parse_blocks(text: bytes) -> list[SSEMessage]:
    out: list[SSEMessage] = []
    for block in text.split(b"\n\n"):
        if not block:
            continue
        if block.startswith(b"data: ") and b"\n" not in block:  # the common case
            out.append(("", block[6:].decode()))
            continue
        event = ""
        data: list[str] = []
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value.decode())
            elif name == b"event":
                event = value.decode()
        if data:
            out.append((event, "\n".join(data)))
        elif event:
            out.append((event, ""))
    return out
