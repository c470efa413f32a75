"""Reference model of a netmap pipe: both ends' rings, krings, slots, buffers and sync rules.

The oracle of the conformance suite, written from the netmap spec (B1-B17, F1-F8, A13) and not
from ``netmap_core.rules``: plain Python integers and lists, no shared memory, no I/O.

Vocabulary. A pipe has two *ends* (master ``NAME{ID``, slave ``NAME}ID``), each with one TX and
one RX ring of ``n`` slots. A *direction* is a sender's TX ring paired with the peer's RX ring:
slot ``i`` of one is exchanged with slot ``i`` of the other (F5), and both start out naming the
same buffers (F6). Every ring carries the user-visible ``head/cur/tail`` (shared memory) and the
kernel's private kring copies ``hwcur/hwtail/rhead/rcur/rtail`` plus ``pipe_tail`` (what the
peer's last sync published for this ring).

Bookkeeping that netmap does not have but the suite needs:

* ``side[i]`` of a direction says which ring's slot ``i`` is authoritative: ``SENDER`` (the TX
  slot; the RX slot is a stale copy) or ``RECEIVER`` (handed over by txsync, not yet released by
  the receiver's rxsync). Counting ``RECEIVER`` slots is the only exact way to know how many
  slots are in flight: after netmap's adopt-then-pass quirk (B8) all ``n`` can be.
* ``tags[i]`` names the packet a slot carries (``(direction, seq)``, or None for a slot the user
  never filled), so the order of what was handed over and released can be compared.
* ``sane`` turns False for good when an operation touches a slot on the wrong side (netmap lets
  that happen only through the B8 quirk): from then on the ring contents are still predicted
  exactly, but buffers may be duplicated or lost and packets overwritten, so the conservation law
  and the in-order law are no longer claimed.
"""
from __future__ import annotations

import select
import struct
from dataclasses import dataclass

__all__ = [
    "NETMAP", "STRICT", "MASTER", "SLAVE", "TX", "RX", "SENDER", "RECEIVER",
    "NS_BUF_CHANGED", "NS_MOREFRAG", "POLLIN", "POLLOUT", "POLLERR",
    "StrictViolation", "RingModel", "Direction", "Descriptor", "PipeModel",
    "circ_between", "payload",
]

NETMAP, STRICT = "netmap", "strict"
MASTER, SLAVE = "master", "slave"
TX, RX = "tx", "rx"
SENDER, RECEIVER = "S", "R"

# netmap.h values, restated here so the oracle shares nothing with the implementation.
NS_BUF_CHANGED = 0x0001
NS_MOREFRAG = 0x0020
POLLIN, POLLOUT, POLLERR = select.POLLIN, select.POLLOUT, select.POLLERR

BUF, LEN, FLAGS, PTR = 0, 1, 2, 3  # positions in a model slot [buf_idx, len, flags, ptr]

_MAGIC = b"NMcf"
HEADER_LEN = 12  # magic, direction, seq: what :func:`parse_payload` needs


def payload(direction: int, seq: int, length: int) -> bytes:
    """The frame the suite sends as packet ``seq`` of ``direction``: a 12-byte header
    (magic, direction, seq) followed by a pattern that depends on both (``length >= 12``)."""
    head = _MAGIC + struct.pack("<II", direction, seq)
    body = bytes((seq * 7 + direction * 101 + j) & 0xFF for j in range(length - len(head)))
    return head + body


def parse_payload(data: bytes) -> tuple[int, int] | None:
    """(direction, seq) of a frame made by :func:`payload`, or None if the magic is missing."""
    if len(data) < HEADER_LEN or data[:4] != _MAGIC:
        return None
    return struct.unpack("<II", data[4:12])


def circ_between(x: int, a: int, b: int, n: int) -> bool:
    """Slot ``x`` (which must be < n) is met walking forward from ``a`` to ``b``, both included."""
    return 0 <= x < n and (x - a) % n <= (b - a) % n


class StrictViolation(Exception):
    """What a ``rules="strict"`` sync must raise (as RingProtocolError): ``field`` of ``ring``
    held ``value`` outside the legal range."""

    def __init__(self, ring: str, field: str, value: int) -> None:
        super().__init__(f"{ring}: {field}={value} is illegal")
        self.ring, self.field, self.value = ring, field, value


class RingModel:
    """One netmap ring of a pipe end and its kring (netmap_kring), with suite bookkeeping."""

    def __init__(self, name: str, kind: str, n: int, slots: list[list[int]]) -> None:
        self.name, self.kind, self.n = name, kind, n
        self.slots = [list(s) for s in slots]
        tail = n - 1 if kind == TX else 0  # A10/F8: TX 0/0/n-1, RX 0/0/0
        # user-visible (shared memory)
        self.head, self.cur, self.tail = 0, 0, tail
        # kernel-private
        self.hwcur, self.hwtail = 0, tail
        self.rhead, self.rcur, self.rtail = 0, 0, tail
        self.pipe_tail = tail
        self.tags: list[tuple[int, int] | None] = [None] * n
        self.held = [False] * n  # RX: the slot's buffer still holds the frame its tag names
        self.rx_synced = False  # RX: an rxsync ran, so ring->ts must be set (B16)
        # set when the ring joins its Direction (every ring of a PipeModel does at creation)
        self.peer: RingModel    # the ring this one exchanges slots with
        self.direction: Direction

    def nxt(self, i: int) -> int:
        return 0 if i + 1 == self.n else i + 1

    def prev(self, i: int) -> int:
        return self.n - 1 if i == 0 else i - 1

    def user_space(self) -> int:
        """``nm_ring_space``: slots in [head, tail) as the user sees them (0 if an index is out
        of range, which only the user can cause)."""
        if self.head >= self.n or self.tail >= self.n:
            return 0
        return (self.tail - self.head) % self.n

    def user_slots(self, k: int) -> list[int]:
        """Indexes of the first ``k`` slots from head."""
        return [(self.head + j) % self.n for j in range(k)]

    def indexes(self) -> tuple[int, int, int]:
        return self.head, self.cur, self.tail


class Direction:
    """A sender's TX ring and the peer's RX ring: the slot-exchange path of F5."""

    def __init__(self, ident: int, tx: RingModel, rx: RingModel) -> None:
        self.ident, self.tx, self.rx = ident, tx, rx
        tx.peer, rx.peer = rx, tx
        tx.direction = rx.direction = self
        self.side = [SENDER] * tx.n
        self.sent: list[tuple[int, int] | None] = []       # tags in the order txsync handed them over
        self.released: list[tuple[int, int] | None] = []   # tags in the order rxsync gave them back

    def in_flight(self) -> int:
        return self.side.count(RECEIVER)

    def authoritative(self, i: int) -> int:
        """The buffer index slot ``i`` of this direction really holds."""
        ring = self.tx if self.side[i] == SENDER else self.rx
        return ring.slots[i][BUF]


@dataclass
class Descriptor:
    """One registration (one file descriptor) of a pipe end. Its extra-buffer list (A13) is not
    stored: like netmap, it is whatever the link words reached from ``bufs_head`` say."""

    ident: int
    role: str
    exclusive: bool
    bufs_head: int


class PipeModel:
    """Both ends of one pipe, from creation (first open) to destruction (last close)."""

    def __init__(self, n: int, mode: str, buf_size: int, opener: str,
                 tx_slots: list[list[int]], rx_slots: list[list[int]], objtotal: int) -> None:
        """``tx_slots``/``rx_slots``: what the first opener's rings held at registration; the
        peer's RX/TX rings start as copies of them (F6). ``objtotal``: buffer indexes at or
        beyond it are bad (B8 sanitisation); any bound >= the allocator's count works as long
        as the bad values the suite plants lie beyond it."""
        if mode not in (NETMAP, STRICT):
            raise ValueError(f"mode={mode!r}: allowed {NETMAP!r}, {STRICT!r}")
        self.n, self.mode, self.buf_size, self.objtotal = n, mode, buf_size, objtotal
        other = SLAVE if opener == MASTER else MASTER
        rings = {
            (opener, TX): RingModel(f"{opener}:tx0", TX, n, tx_slots),
            (opener, RX): RingModel(f"{opener}:rx0", RX, n, rx_slots),
            (other, RX): RingModel(f"{other}:rx0", RX, n, tx_slots),
            (other, TX): RingModel(f"{other}:tx0", TX, n, rx_slots),
        }
        self.rings = rings
        self.m2s = Direction(0, rings[MASTER, TX], rings[SLAVE, RX])
        self.s2m = Direction(1, rings[SLAVE, TX], rings[MASTER, RX])
        self.directions = (self.m2s, self.s2m)
        self.live: set[int] = {s[BUF] for s in tx_slots} | {s[BUF] for s in rx_slots}
        # what the pipe's allocator has handed out and not taken back (netmap's bitmap, inverted):
        # freeing anything else is netmap's "double free"
        self.allocated: set[int] = set(self.live)
        self.content: dict[int, bytes] = {}  # known leading bytes of each buffer
        self.descriptors: dict[int, Descriptor] = {}
        self.sane = True
        self.anomalies: list[str] = []
        self.next_seq = [0, 0]

    # --- structure ------------------------------------------------------------------------
    def ring(self, role: str, kind: str) -> RingModel:
        return self.rings[role, kind]

    def users(self, role: str) -> list[Descriptor]:
        return [d for d in self.descriptors.values() if d.role == role]

    def _anomaly(self, what: str) -> None:
        if self.sane:
            self.anomalies.append(what)
        self.sane = False

    # --- registration (F7, A13, B17) ------------------------------------------------------
    def open_conflict(self, role: str, exclusive: bool) -> bool:
        """B17: EBUSY if the end is held exclusively, or an exclusive open finds users."""
        users = self.users(role)
        return any(d.exclusive for d in users) or (exclusive and bool(users))

    def register(self, ident: int, role: str, exclusive: bool, extra: list[int]) -> Descriptor:
        """A new descriptor whose granted extra buffers are ``extra`` (list order)."""
        for i, b in enumerate(extra):
            link = extra[i + 1] if i + 1 < len(extra) else 0
            self.content[b] = struct.pack("<I", link) + self.content.get(b, b"")[4:]
        d = Descriptor(ident, role, exclusive, extra[0] if extra else 0)
        self.descriptors[ident] = d
        self.live |= set(extra)
        self.allocated |= set(extra)
        return d

    def extra_list(self, ident: int) -> list[int] | None:
        """Walk the descriptor's list as netmap_core's Port.extra_buffers does: stop at an index
        outside [2, objtotal) or on a loop. None if a link word is unknown to the model."""
        out: list[int] = []
        idx = self.descriptors[ident].bufs_head
        while 2 <= idx < self.objtotal and idx not in out:
            out.append(idx)
            known = self.content.get(idx, b"")
            if len(known) < 4:
                return None
            idx = struct.unpack("<I", known[:4])[0]
        return out

    def unregister(self, ident: int) -> bool:
        """Close one descriptor: whatever its list holds now is freed (A13/L6). True if the pipe
        is now gone."""
        self.live -= set(self.extra_list(ident) or [])
        self.allocated -= set(self.list_frees(ident) or [])
        del self.descriptors[ident]
        return not self.descriptors

    # --- what netmap frees, and when (netmap_mem2.c, netmap_pipe.c) ------------------------
    def list_frees(self, ident: int) -> list[int] | None:
        """The buffers netmap_extra_free frees, in order, when descriptor ``ident`` closes: it
        follows the link words from ``bufs_head`` while the index is in [2, objtotal), zeroing
        each link as it goes, so a list that loops frees its first repeated buffer a second
        time (and stops there). None if a link word is unknown to the model."""
        walk = self._list_walk(ident)
        return None if walk is None else walk[0]

    def _list_walk(self, ident: int) -> tuple[list[int], int] | None:
        """(buffers freed, the index that ended the walk) - netmap logs "breaking with head"
        when that index is not 0 (a list ending in garbage, or cut short by a double free)."""
        out: list[int] = []
        seen: set[int] = set()
        idx = self.descriptors[ident].bufs_head
        while 2 <= idx < self.objtotal:
            out.append(idx)
            if idx in seen:
                return out, idx
            seen.add(idx)
            known = self.content.get(idx, b"")
            if len(known) < 4:
                return None
            idx = struct.unpack("<I", known[:4])[0]
        return out, idx

    def destruction_frees(self) -> list[tuple[str, str, int]]:
        """(role, kind, slot) of every buffer netmap_pipe_krings_delete_both frees when the last user
        goes: in each of the four rings it first zeroes ``buf_idx`` of the kernel's part - on an
        RX ring the slot at ``pipe_tail``, then on every ring the slots after ``pipe_tail`` up
        to ``hwcur`` - and then frees every other slot's buffer in [2, objtotal). For a pipe
        used as netmap intends, that is each slot pair's authoritative side exactly once."""
        out: list[tuple[str, str, int]] = []
        for (role, kind), r in self.rings.items():
            zeroed = {r.pipe_tail} if kind == RX else set()
            j = r.nxt(r.pipe_tail)
            while j != r.hwcur and len(zeroed) < r.n:
                zeroed.add(j)
                j = r.nxt(j)
            out.extend((role, kind, i) for i in range(r.n)
                       if i not in zeroed and 2 <= r.slots[i][BUF] < self.objtotal)
        return out

    def double_frees(self, ident: int) -> tuple[list[int], list[tuple[str, str, int]]]:
        """What closing descriptor ``ident`` now would free a second time (netmap's "ouch,
        double free"): the repeated or unallocated buffers of its extra-buffer list, and - when
        it is the pipe's last user - the ring slots whose buffer the destruction would free
        again. A list that ends in anything but 0 (netmap logs that too) or whose link words
        the model does not know is suspect as a whole."""
        alloc = set(self.allocated)
        walk = self._list_walk(ident)
        frees = None if walk is None else walk[0]
        bad_list: list[int] = []
        if walk is None or walk[1] != 0:
            bad_list = [self.descriptors[ident].bufs_head]
        for b in frees or []:
            if b in alloc:
                alloc.remove(b)
            else:
                bad_list.append(b)
        if bad_list:
            alloc = set(self.allocated)  # the caller drops such a list: nothing of it is freed
        bad_slots = []
        if len(self.descriptors) == 1:
            for role, kind, i in self.destruction_frees():
                b = self.ring(role, kind).slots[i][BUF]
                if b in alloc:
                    alloc.remove(b)
                else:
                    bad_slots.append((role, kind, i))
        return bad_list, bad_slots

    def drop_list(self, ident: int) -> None:
        """The user sets ``ni_bufs_head`` to 0: the close frees nothing of the list (its buffers
        stay allocated, lost until the allocator goes)."""
        self.descriptors[ident].bufs_head = 0

    # --- user operations (no kernel involvement) ------------------------------------------
    def fill(self, role: str, lengths: list[int], flags: list[int],
             ptrs: list[int]) -> list[tuple[int, int, bytes]]:
        """Write ``len(lengths)`` frames into TX slots from head and move head = cur past them.
        Returns (slot, buf_idx, frame) for the suite to write."""
        r = self.ring(role, TX)
        d = r.direction
        out = []
        for j, (ln, fl, p) in enumerate(zip(lengths, flags, ptrs)):
            i = (r.head + j) % r.n
            if d.side[i] != SENDER:
                self._anomaly(f"{r.name} slot {i} filled while in flight")
            seq = self.next_seq[d.ident]
            self.next_seq[d.ident] += 1
            frame = payload(d.ident, seq, ln)
            s = r.slots[i]
            # a buffer swapped in earlier must still be announced (B11)
            s[LEN], s[FLAGS], s[PTR] = ln, fl | (s[FLAGS] & NS_BUF_CHANGED), p
            self.content[s[BUF]] = frame
            r.tags[i] = (d.ident, seq)
            out.append((i, s[BUF], frame))
        r.head = r.cur = (r.head + len(lengths)) % r.n
        return out

    def set_indexes(self, role: str, kind: str, head: int | None = None, cur: int | None = None,
                    tail: int | None = None) -> None:
        r = self.ring(role, kind)
        if head is not None:
            r.head = head
        if cur is not None:
            r.cur = cur
        if tail is not None:
            r.tail = tail

    def mark_read(self, role: str, slot: int) -> None:
        r = self.ring(role, RX)
        if r.direction.side[slot] != RECEIVER:
            self._anomaly(f"{r.name} slot {slot} read while not received")

    def edit_rx(self, role: str, slot: int, length: int, ptr: int) -> None:
        """The receiver rewrites ``len`` and ``ptr`` of a slot it holds (a legal edit: the
        buffer stays, so does the frame's tag)."""
        r = self.ring(role, RX)
        if r.direction.side[slot] != RECEIVER:
            self._anomaly(f"{r.name} slot {slot} edited while not received")
        r.slots[slot][LEN], r.slots[slot][PTR] = length, ptr
        if length < HEADER_LEN:
            r.held[slot] = False  # too short to show the frame's header any more

    def pop_extra(self, ident: int) -> int:
        """Take the list's head: ``bufs_head`` moves to the link word it holds."""
        d = self.descriptors[ident]
        x = d.bufs_head
        d.bufs_head = struct.unpack("<I", self.content[x][:4])[0]
        return x

    def push_extra(self, ident: int, buf: int) -> bytes:
        """Push ``buf`` on the descriptor's list; returns the 4-byte link to write at its start."""
        d = self.descriptors[ident]
        link = struct.pack("<I", d.bufs_head)
        self.content[buf] = link + self.content.get(buf, b"")[4:]
        d.bufs_head = buf
        return link

    def swap_with_extra(self, ident: int, kind: str, slot: int) -> tuple[int, int, bytes]:
        """Zero-copy swap: slot's buffer goes on the extra list, the list's head takes its place,
        NS_BUF_CHANGED is set. Returns (new buf_idx of the slot, buffer pushed, its link)."""
        d = self.descriptors[ident]
        r = self.ring(d.role, kind)
        want = SENDER if kind == TX else RECEIVER
        if r.direction.side[slot] != want:
            self._anomaly(f"{r.name} slot {slot} swapped while owned by the other side")
        x = self.pop_extra(ident)
        old = r.slots[slot][BUF]
        r.slots[slot][BUF] = x
        r.slots[slot][FLAGS] |= NS_BUF_CHANGED
        link = self.push_extra(ident, old)
        if kind == TX:
            r.tags[slot] = None  # whatever the slot carried is now on the extra list
        else:
            r.held[slot] = False  # the frame left with its buffer; the tag stays for release order
        return x, old, link

    def forward(self, role: str, k: int) -> list[tuple[int, int]]:
        """Zero-copy forwarding inside one end (netmap's bridge): the ``k`` RX slots from head
        swap buffers with the ``k`` TX slots from head; TX takes len, MOREFRAG and
        NS_BUF_CHANGED, RX gets NS_BUF_CHANGED; both heads (and curs) advance by ``k``."""
        rx, tx = self.ring(role, RX), self.ring(role, TX)
        pairs = []
        for j in range(k):
            a, b = (rx.head + j) % rx.n, (tx.head + j) % tx.n
            if rx.direction.side[a] != RECEIVER or tx.direction.side[b] != SENDER:
                self._anomaly(f"{role} forward {a}->{b} across an in-flight slot")
            rs, ts = rx.slots[a], tx.slots[b]
            rs[BUF], ts[BUF] = ts[BUF], rs[BUF]
            ts[LEN] = rs[LEN]
            ts[FLAGS] = (rs[FLAGS] & NS_MOREFRAG) | NS_BUF_CHANGED
            rs[FLAGS] |= NS_BUF_CHANGED
            # the frame travels with the buffer (a user may re-expose a slot it already
            # forwarded by moving head back before syncing: then it forwards a stale buffer)
            tx.tags[b] = rx.tags[a] if rx.held[a] else None
            rx.held[a] = False
            pairs.append((a, b))
        rx.head = rx.cur = (rx.head + k) % rx.n
        tx.head = tx.cur = (tx.head + k) % tx.n
        return pairs

    # --- the kernel: prologues (B6, B7), strict rule, reinit (B8) --------------------------
    def tx_failure(self, r: RingModel) -> tuple[str, int] | None:
        """Which field makes the TX prologue fail, checked in netmap's order (B6), or None."""
        head, cur, rh, rt, n = r.head, r.cur, r.rhead, r.rtail, r.n
        if rh <= rt:  # the legal head range [rhead, rtail] does not wrap
            if not rh <= head <= rt:
                return "head", head
            if not head <= cur <= rt:
                return "cur", cur
        else:
            if rt < head < rh:
                return "head", head
            if head <= rt:
                if not head <= cur <= rt:
                    return "cur", cur
            elif rt < cur < head:  # head >= rhead: only "cur not inside (rtail, head)"
                return "cur", cur
        if head >= n:  # passed the comparisons, but the prologue returns head and head >= n fails
            return "head", head
        return None

    def rx_failure(self, r: RingModel) -> tuple[str, int] | None:
        """Which field makes the RX prologue fail (B7; against hwcur/hwtail), or None."""
        head, cur, hc, ht, n = r.head, r.cur, r.hwcur, r.hwtail, r.n
        if hc <= ht:
            if not hc <= head <= ht:
                return "head", head
            if not head <= cur <= ht:
                return "cur", cur
        else:
            if ht < head < hc:
                return "head", head
            if head <= ht:
                if not head <= cur <= ht:
                    return "cur", cur
            elif ht < cur < head:
                return "cur", cur
        if head >= n:
            return "head", head
        return None

    def strict_failure(self, r: RingModel) -> tuple[str, int] | None:
        """Strict mode: netmap's failures first, then also any head outside [first, last] or cur
        outside [head, last] walking forward (first/last = rhead/rtail on TX, hwcur/hwtail on
        RX), which catches the cur >= n that netmap lets through in the wrapped case."""
        bad = self.tx_failure(r) if r.kind == TX else self.rx_failure(r)
        if bad:
            return bad
        first, last = (r.rhead, r.rtail) if r.kind == TX else (r.hwcur, r.hwtail)
        if not circ_between(r.head, first, last, r.n):
            return "head", r.head
        if not circ_between(r.cur, r.head, last, r.n):
            return "cur", r.cur
        return None

    def _check(self, r: RingModel) -> tuple[str, int] | None:
        """The prologue's verdict; in strict mode a failure raises before anything changes."""
        if self.mode == STRICT:
            bad = self.strict_failure(r)
            if bad:
                raise StrictViolation(r.name, *bad)
            return None
        return self.tx_failure(r) if r.kind == TX else self.rx_failure(r)

    def _reinit(self, r: RingModel) -> None:
        """netmap_ring_reinit (B8): adopt the user's indexes, sanitise every slot, and reset to
        hwcur/hwtail only if an index is beyond n-1."""
        if r.kind == TX and r.tail != r.rtail and r.tail < r.n:
            # a tail the user wrote becomes the kernel's rtail: later prologues then accept a
            # head past the slot that must stay empty
            self._anomaly(f"{r.name}: reinit adopted the user's tail {r.tail} (kernel's {r.rtail})")
        r.rhead, r.rcur, r.rtail = r.head, r.cur, r.tail
        lim = r.n - 1
        out_of_range = r.head > lim or r.cur > lim or r.tail > lim
        for s in r.slots:
            if s[BUF] < 2 or s[BUF] >= self.objtotal:
                s[BUF], s[LEN] = 0, 0
            elif s[LEN] > self.buf_size:
                s[LEN] = 0
        if out_of_range:
            r.head = r.cur = r.rhead = r.rcur = r.hwcur
            r.tail = r.rtail = r.hwtail
            return
        # the quirk: adopted indexes may hand the user slots the other side holds
        want = SENDER if r.kind == TX else RECEIVER
        d = r.direction
        theirs = [i for i in r.user_slots(r.user_space()) if d.side[i] != want]
        if theirs or (r.kind == TX and r.user_space() + d.in_flight() > r.n - 1):
            self._anomaly(f"{r.name}: adopted head/cur/tail {r.indexes()} expose slots {theirs} "
                          f"the other side holds")

    def _accept(self, r: RingModel) -> None:
        """A passed prologue: restore an overwritten tail, take head/cur as rhead/rcur."""
        r.tail = r.rtail
        r.rhead, r.rcur = r.head, r.cur

    def _finalize(self, r: RingModel) -> None:
        r.tail = r.rtail = r.hwtail

    # --- the kernel: the pipe's own sync routines (F5) -------------------------------------
    def _pipe_txsync(self, t: RingModel) -> None:
        """Publish TX slots [hwcur, rhead) to the peer's RX ring at the same indexes; the peer's
        tail may only reach the end of the last complete (non-MOREFRAG) slot."""
        rx, d = t.peer, t.direction
        t.hwtail = t.pipe_tail
        m = (t.rhead - t.hwcur) % t.n
        k, publish = t.hwcur, None
        for _ in range(m):
            if d.side[k] == RECEIVER:
                self._anomaly(f"{t.name} slot {k} sent again while in flight")
            d.side[k] = RECEIVER
            rx.slots[k] = list(t.slots[k])
            t.slots[k][FLAGS] &= ~NS_BUF_CHANGED
            d.sent.append(t.tags[k])
            rx.tags[k], t.tags[k] = t.tags[k], None
            rx.held[k] = True
            complete = not t.slots[k][FLAGS] & NS_MOREFRAG
            k = t.nxt(k)
            if complete:
                publish = k
        t.hwcur = k
        if publish is not None:
            rx.pipe_tail = publish
        if d.in_flight() > t.n - 1:
            self._anomaly(f"{t.name}: {d.in_flight()} slots in flight")

    def _pipe_rxsync(self, r: RingModel) -> None:
        """Give RX slots [hwcur, rhead) back to the sender: each is copied, as the receiver left
        it (buf_idx, len, flags, ptr), to the same index of the sender's TX ring, then
        NS_BUF_CHANGED is cleared on the RX slot; the sender's tail may reach the slot before
        the first one still held."""
        t, d = r.peer, r.direction
        r.hwtail = r.pipe_tail
        m = (r.rhead - r.hwcur) % r.n
        if m == 0:
            return
        k = r.hwcur
        for _ in range(m):
            if d.side[k] != RECEIVER:
                self._anomaly(f"{r.name} slot {k} released but never received")
            d.side[k] = SENDER
            d.released.append(r.tags[k])
            t.slots[k] = list(r.slots[k])
            r.slots[k][FLAGS] &= ~NS_BUF_CHANGED
            k = r.nxt(k)
        t.pipe_tail = r.prev(k)
        r.hwcur = k

    # --- the syscalls ---------------------------------------------------------------------
    def txsync(self, role: str) -> None:
        """NIOCTXSYNC (B6, B8, B10): a failed prologue reinits and skips the pipe's txsync."""
        t = self.ring(role, TX)
        if self._check(t):
            self._reinit(t)
            return
        self._accept(t)
        self._pipe_txsync(t)
        self._finalize(t)

    def rxsync(self, role: str) -> None:
        """NIOCRXSYNC (B7, B8): the kernel takes head/cur first; even after a failed prologue
        (reinit) the pipe's rxsync still runs."""
        r = self.ring(role, RX)
        bad = self._check(r)
        self._rx_round(r, bad)

    def _rx_round(self, r: RingModel, bad: tuple[str, int] | None) -> bool:
        r.rhead, r.rcur = r.head, r.cur
        if bad:
            self._reinit(r)
        else:
            self._accept(r)
        self._pipe_rxsync(r)
        self._finalize(r)
        r.rx_synced = True
        return bool(bad)

    def poll(self, role: str, events: int) -> int:
        """netmap_poll with timeout 0 (B13): the TX part runs unless POLLOUT is not wanted and
        nothing is pending (head == hwcur); the RX part only if POLLIN is wanted; a ring is ready
        when rcur != rtail after its sync; each part is scanned a second time if nothing was
        ready (the wait-queue race avoidance), which matters for the adopt-then-pass quirk."""
        t, r = self.ring(role, TX), self.ring(role, RX)
        revents = 0
        want_tx, want_rx = events & POLLOUT, events & POLLIN
        retry = True
        while True:
            if want_tx or t.head != t.hwcur:
                if self._check(t):
                    self._reinit(t)
                    revents |= POLLERR
                else:
                    self._accept(t)
                    self._pipe_txsync(t)
                    self._finalize(t)
                if t.rcur != t.rtail:
                    revents |= want_tx
                    want_tx = 0
            if want_tx and retry:
                retry = False
                continue
            break
        if want_rx:
            retry = True
            while True:
                if self._rx_round(r, self._check(r)):
                    revents |= POLLERR
                if r.rcur != r.rtail:
                    revents |= want_rx
                    retry = False
                if retry:
                    retry = False
                    continue
                break
        return revents

    def poll_touches_tx(self, role: str, events: int) -> bool:
        """Whether poll(events) would run the TX part before the RX part (used to avoid strict
        cases whose outcome depends on the unspecified order of checks)."""
        t = self.ring(role, TX)
        return bool(events & POLLOUT) or t.head != t.hwcur

    # --- laws -----------------------------------------------------------------------------
    def authoritative_buffers(self) -> list[int]:
        """Every buffer the pipe's slots and open descriptors' extra lists hold (F6: each slot
        pair counts once, through its authoritative side)."""
        out = [d.authoritative(i) for d in self.directions for i in range(self.n)]
        for ident in self.descriptors:
            out.extend(self.extra_list(ident) or [])
        return out

    def conservation_error(self) -> str | None:
        """None if every live buffer is held exactly once (only claimed while ``sane``)."""
        held = self.authoritative_buffers()
        dup = sorted({b for b in held if held.count(b) > 1})
        if dup:
            return f"buffers held twice: {dup}"
        if set(held) != self.live:
            return (f"held {sorted(set(held) - self.live)} not live; "
                    f"live {sorted(self.live - set(held))} not held")
        return None

    def order_error(self) -> str | None:
        """None if, in each direction, what rxsyncs released is, in order, a prefix of what
        txsyncs handed over."""
        for d in self.directions:
            if d.released != d.sent[:len(d.released)]:
                return f"direction {d.ident}: released {d.released} is not a prefix of sent {d.sent}"
        return None

    def one_slot_empty_error(self) -> str | None:
        """L3/B2: per direction, slots in flight plus the sender's free slots never exceed n-1."""
        for d in self.directions:
            inflight = d.in_flight()
            if inflight > self.n - 1:
                return f"direction {d.ident}: {inflight} slots in flight on an {self.n}-slot pipe"
            free = d.tx.user_space()
            if free + inflight > self.n - 1:
                return f"direction {d.ident}: {free} free TX slots + {inflight} in flight > n-1"
            if d.rx.user_space() > inflight:
                return f"direction {d.ident}: receiver holds {d.rx.user_space()} > {inflight} in flight"
        return None
