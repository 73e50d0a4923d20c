"""Redis Streams broker: the engine past one machine.

Layout (``P`` is the key prefix, default ``crank``):

* ``P:q:<capability>:<band>``: one stream per capability and priority band
  (:func:`crank.routing.queues.stream_key`) with the consumer group ``crank``; entries
  carry only the task id. The pending entries list (PEL) is the set of in-flight tasks.
* ``P:t:<id>``: the task hash (payload, status, attempts, result, error). A
  succeeded or failed task's hash expires after ``result_ttl_s``; dead ones are kept.
* ``P:streams`` (zset by band) and ``P:streamcap`` list the streams.
* ``P:idem:<key>``: idempotency keys, ``SET NX`` inside the submit script, which
  also compares the input fingerprint stored in the owner's hash (``fp``).
* ``P:delayed``: retries waiting out their backoff (zset by due time); the
  claim script moves due ones back onto their stream. ``P:delayed:<stream>`` holds
  the same tasks by stream, for the stats to count (``ZCARD``): counting them from
  ``P:delayed`` read each one's hash (with 15,000 backing off, 25 ms of Redis per
  stats call, and only the first 10,000 were counted).
* ``P:dead``: the dead-letter stream (ids of dead tasks); a dead task's hash names its
  entry (``dead_entry``), which a redrive or a purge deletes, so ``XLEN`` counts the
  dead letters. It is never trimmed: it was (``MAXLEN ~ 100000``), and past 100,000
  dead letters the oldest lost their entries while their tasks stayed dead and kept,
  uncounted, and out of reach of a capability's redrive or purge.
* ``P:reclaim:<stream>``: set (100 ms) when a claim scanned the stream's
  pending entries with ``XAUTOCLAIM``; no claim scans again until it expires,
  so claims stay cheap with many tasks in flight. A scan that found more than it
  could take deletes it.
* ``P:released:<stream>``: entries given back unrun (``release``, ``recover``), by
  entry id; the next claim takes them first, with ``XCLAIM``. Found by a scan
  instead, they started from the front of the PEL at every scan and reached only
  its first entries: behind 40 in-flight tasks a released one waited until those
  were acked.
* ``P:wake``: a stream (group ``crank``, trimmed to about 64 entries) a worker that
  found nothing waits on beside its task streams: a give-back (``release``,
  ``recover``) or a retry put off adds an entry, which wakes one waiting worker to
  claim again (a waiting worker also stops waiting when the first retry comes due).
  Without it a given-back task waited for the end of a worker's wait (0.5 s).
* ``P:ev:<id>``: the events a streaming task emitted, one stream entry each with
  the id ``0-<n>`` (n = the event's number); expires ``result_ttl_s`` after the
  last event. Readers tail it with ``XREAD BLOCK``.
* ``P:w:<id>``: the channels (``P:n:<listener>``, one per listening process) to
  ``PUBLISH`` a task's notice on when it ends (:mod:`.notices`); the script that
  stores the outcome publishes, then deletes the set.

* ``P:cancel:<consumer>``: a channel per worker (its consumer name): the cancel
  script publishes there the id of a task that worker holds when the task is asked to
  stop (:meth:`RedisBroker.listen_for_cancels`); the hash's ``cancel_requested`` marks
  it, so whichever script ends it (fail, release, a claim after its lease ran out)
  ends it ``cancelled``.
* ``P:ix``: the list index (below).

Listing: every task, when it is submitted, gets the next number of ``P:ix:seq``
and is added to the sorted set ``P:ix`` under that score: one ``INCRBY`` and one
``ZADD`` per submit call, nothing on the claim and ack paths. ``list_tasks`` walks
it newest first and reads each entry's status, capability and caller from the task
hash (statuses change too often to be indexed cheaply), a bounded number of
entries per script call. The entry of an expired task is taken out when a list
meets it, and by a sweep in the submit script: about every 64 tasks it looks at two
entries per task submitted, among those submitted more than ``result_ttl_s`` ago
(``P:ix:clock`` records which number a submit reached at what time, once a
minute), going round from ``P:ix:swept``; so the index stays as large as the tasks
it lists, and costs nothing to sweep while every task is younger than the TTL.

Visibility timeout = the entry's idle time in the PEL: a claim first takes
entries idle longer than its timeout with ``XAUTOCLAIM`` (their consumer died;
at most 100 ms late, see ``P:reclaim``),
heartbeats reset the idle time (``XCLAIM ... JUSTID``), ``release``/``recover``
set it huge and list the entry in ``P:released``, so the next claim takes it first.
Workers sharing a queue should use the same visibility timeout.

Trimming: an entry is deleted (``XACK`` + ``XDEL``) as soon as its task is
acked, failed or dead, so ``XLEN`` of a stream is its backlog plus in-flight
tasks (the number a KEDA ``redis-streams`` scaler should target with
``streamLength``), and streams never grow with history.

Priorities are grouped into bands (:func:`priority_band`): 0, and for any other
priority the bit length of its magnitude, capped at 7, with its sign (1; 2-3;
4-7; ...; 64 and above), so a capability's tasks sit in at most 15 streams,
whatever priorities clients send, and an autoscaler can watch every one of them
(:data:`PRIORITY_BANDS`). A claim reads the streams highest band first, oldest
first within a band; a claim that found nothing and waits (``XREADGROUP BLOCK``
on all its streams) takes what arrives first. ``stats().running`` counts the
entries in the PELs but those given back, which count as waiting.

Every operation is one Lua script call (one round trip, atomic), batches
included; ``ack_and_claim`` sends the ack and the next claim together, and
``begin_ack_and_claim`` returns once they are written, so a worker runs its
batch while Redis claims the next one (the replies wait in the socket).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

from crank.errors import BrokerError
from crank.runtime.brokers.common import (
    BrokerOptions,
    EndedByClaims,
    new_id,
    reset_in_forked_children,
    url_usage_error,
    url_without_password,
)
from crank.runtime.brokers.contract import (
    Broker,
    Cancellation,
    Claim,
    ClaimOptions,
    DeadLetterChange,
    IdempotencyKeyReused,
    Notice,
    PendingClaims,
    QueueStats,
    Submitted,
    TaskPage,
    TaskQuery,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    TaskSummary,
    input_fingerprint,
)
from crank.runtime.brokers.notices import ResultNotices, running_loop
from crank.runtime.brokers.resp import (
    Address,
    Connection,
    ConnectionLost,
    LoginRefused,
    Pool,
    RedisError,
    ReplyError,
    Timeouts,
    idle_too_long,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterator, Mapping, Sequence


#: a subscription lost and made again (stdlib logging: crank's set-up renders it).
_log = logging.getLogger("crank.runtime.brokers.redis")
# a library's records reach the handlers of the program that uses it, or nowhere: without
# a handler anywhere, Python's last resort printed a bare warning (redis_subscription_lost)
# on the stderr of a producer that configured no logging. Set here, where a program that
# is not crank's own logs through crank (not in crank/__init__: `crank --help` would
# import logging for it).
logging.getLogger("crank").addHandler(logging.NullHandler())
_BLOCK_SLICE_S = 0.5
#: index entries one call of the list script looks at, at most (Redis runs nothing else
#: meanwhile), and the calls one page makes before it answers short with a cursor.
_LIST_BUDGET = 2_000
_LIST_CALLS = 5
#: P:dead entries one call of the dead-letter script walks (see ``_change_dead_letters``).
_DEAD_BUDGET = 1_000

#: The consumer group every worker reads the streams with.
CONSUMER_GROUP = "crank"
_URL_HINT = (
    "use redis://host:port/db, redis://:password@host:port/db, "
    "redis://user:password@host:port/db (an ACL user), rediss://... (TLS) or "
    "unix:///path/to/redis.sock (docs/runtime.md, Redis URLs)"
)
#: The scripts (``lua/<name>.lua``) the broker loads as it connects.
_SCRIPTS = (
    "submit", "claim", "adopt", "ack", "fail", "extend", "recover",
    "stats", "events", "watch", "list", "cancel", "dead",
)  # fmt: skip


@cache
def _lua(name: str) -> str:
    folder = resources.files("crank.runtime.brokers") / "lua"
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    if name in ("claim", "adopt", "ack", "fail", "extend", "cancel", "recover"):
        body = (folder / "common.lua").read_text(encoding="utf-8") + "\n" + body
    if name == "submit":
        body = (folder / "index.lua").read_text(encoding="utf-8") + "\n" + body
    return body


def _fields(flat: Sequence[str] | None) -> dict[str, str]:
    """A hash or stream entry's fields, as RESP2 sends them (``[k1, v1, k2, v2, ...]``)."""
    pairs = list(flat or ())
    return dict(zip(pairs[::2], pairs[1::2], strict=True))


def _opt_float(value: str | None) -> float | None:
    return float(value) if value else None


def _record(h: Mapping[str, str]) -> TaskRecord:
    return TaskRecord(
        id=h["id"],
        capability=h["capability"],
        payload=json.loads(h["payload"]),
        status=cast("TaskStatus", h["status"]),
        priority=int(h.get("priority") or 0),
        attempts=int(h.get("attempts") or 0),
        max_attempts=int(h.get("max_attempts") or 3),
        idempotency_key=h.get("idempotency_key") or None,
        created_at=float(h.get("created_at") or 0.0),
        updated_at=float(h.get("updated_at") or 0.0),
        result=json.loads(h["result"]) if h.get("result") else None,
        error=json.loads(h["error"]) if h.get("error") else None,
        timeout_s=_opt_float(h.get("timeout_s")),
        meta=json.loads(h["meta"]) if h.get("meta") else {},
        cancel_requested_at=_opt_float(h.get("cancel_requested")),
    )


def _claimed(fields: Sequence[str], now: float) -> TaskRecord:
    """A claimed task from the claim script's HMGET (see ``common.lua``)."""
    task_id, capability, payload, priority, attempts, max_attempts, key, created, timeout, meta = (
        fields
    )
    return TaskRecord.claimed(
        id=task_id,
        capability=capability,
        payload=json.loads(payload),
        priority=int(priority),
        attempts=int(attempts),
        max_attempts=int(max_attempts),
        idempotency_key=key or None,
        created_at=float(created),
        updated_at=now,
        timeout_s=_opt_float(timeout),
        meta=json.loads(meta) if meta else {},
    )


def _summary(fields: Sequence[str | None]) -> TaskSummary:
    """A listed task from the list script's HMGET (see ``list.lua``)."""
    status, task_id, capability, priority, attempts, max_attempts, created, updated, error, meta = (
        fields
    )
    extra = json.loads(meta) if meta else {}
    requested, caller = extra.get("requested"), extra.get("caller")
    return TaskSummary(
        id=str(task_id),
        capability=str(capability),
        status=cast("TaskStatus", status),
        priority=int(priority or 0),
        attempts=int(attempts or 0),
        max_attempts=int(max_attempts or 3),
        created_at=float(created or 0.0),
        updated_at=float(updated or 0.0),
        requested=requested if isinstance(requested, str) else str(capability),
        caller=caller if isinstance(caller, str) else None,
        error=json.loads(error) if error else None,
    )


def _caller(meta: Mapping[str, Any] | None) -> str:
    """Who submitted a task, as its hash keeps it ('' when nobody said)."""
    caller = (meta or {}).get("caller")
    return caller if isinstance(caller, str) else ""


def _split_receipt(receipt: str) -> tuple[str, str]:
    entry, _, token = receipt.partition("|")
    return entry, token


class RedisBroker(Broker):
    """A task queue on Redis Streams; thread-safe (one connection pool)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "crank",
        retry_base_s: float = 0.5,
        retry_max_s: float = 60.0,
        result_ttl_s: float = 86_400.0,
        socket_timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.options = BrokerOptions(retry_base_s, retry_max_s, result_ttl_s)
        #: the result TTL in whole seconds, as the scripts EXPIRE keys.
        self._ttl = max(1, int(result_ttl_s))
        try:
            address = Address.parse(url)
        except ValueError as exc:
            raise url_usage_error(url, str(exc), _URL_HINT) from None
        timeouts = Timeouts(
            read_s=socket_timeout_s + _BLOCK_SLICE_S, connect_s=min(socket_timeout_s, 2.0)
        )
        self._pool = Pool(address, timeouts)
        self._hot = _HotConnection(self._pool)
        # Redis names each script by its SHA-1 as it loads it (one round trip for all)
        try:
            shas = self._commands([("SCRIPT", "LOAD", _lua(name)) for name in _SCRIPTS], "connect")
        except BrokerError:  # (a login Redis wants and was not given: NOAUTH)
            self._hot.close()
            self._pool.close()
            raise
        self._scripts: dict[str, str] = dict(zip(_SCRIPTS, shas, strict=True))
        #: this process's channel for result notices (subscribed on first use).
        self.notice_channel = f"{prefix}:n:{new_id()}"
        self._listener: _NoticeListener | None = None
        self._listener_lock = threading.Lock()
        self._ended = EndedByClaims()
        reset_in_forked_children(self)

    def _after_fork_in_child(self) -> None:
        """A forked child's waiters are told on a channel of its own (subscribed on first
        use): the parent's channel reaches the parent's subscription only. The parent's
        subscription is dropped, not closed: closing it here shuts the parent's socket
        down. Its command connections are the child's own, made on first use."""
        self._listener_lock = threading.Lock()  # a thread of the parent may have held it
        self._listener = None
        self.notice_channel = f"{self.prefix}:n:{new_id()}"
        # the connections too: a call one of the parent's threads was in as the process
        # forked holds the pool's lock or the hot connection for ever in the child
        self._pool.after_fork_in_child()
        self._hot = _HotConnection(self._pool)

    # -- plumbing --------------------------------------------------------------

    def _script(self, name: str, args: Sequence[Any], what: str) -> Any:
        return self._send([(name, list(args))], what).replies()[0]

    def _send(self, calls: Sequence[tuple[str, list[Any]]], what: str) -> _Inflight:
        """Write ``EVALSHA`` of each ``(script, args)`` and return without waiting:
        :meth:`_Inflight.replies` reads the answers.

        This is what lets a worker run one batch while Redis claims the next. Nothing
        asks first whether Redis knows the scripts: one it no longer knows (it
        restarted) is run again with ``EVAL`` (which loads it) when its ``NOSCRIPT``
        answer is read, which is safe because it did not run.
        """
        commands = [("EVALSHA", self._scripts[name], 0, *args) for name, args in calls]
        return _Inflight(self, self._write(commands, what), calls, what)

    def _command(self, command: tuple[Any, ...], what: str) -> Any:
        """One plain command on the hot connection (:class:`_HotConnection`); its reply
        as Redis sent it."""
        return self._commands([command], what)[0]

    def _commands(self, commands: Sequence[tuple[Any, ...]], what: str) -> list[Any]:
        """Plain commands written together (one round trip); their replies."""
        calls: list[tuple[str, list[Any]]] = [("", [])] * len(commands)
        return _Inflight(self, self._write(commands, what), calls, what).replies()

    def _write(self, commands: Sequence[tuple[Any, ...]], what: str) -> Connection:
        """Write ``commands`` on the hot connection (or one of the pool's while it is
        busy); returns the connection, whose replies the caller reads."""
        hot = self._hot
        conn = hot.take()
        try:
            conn.send(commands)
        except BaseException as exc:
            conn.close()
            hot.give(conn)
            if isinstance(exc, RedisError):
                raise self._error(what, exc) from exc
            raise
        return conn

    def _error(self, what: str, exc: Exception) -> BrokerError:
        if isinstance(exc, LoginRefused) or "NOAUTH" in str(exc):
            # it runs and answers: what it refused (or wants: NOAUTH) is in the URL
            hint = (
                "check the broker URL's user and password (redis://user:password@host/db) "
                "and its database number (0 to the server's `databases` - 1; "
                "redis-cli -u URL ping tries the same login)"
            )
        else:
            hint = (
                "check that redis-server runs and is reachable at that address "
                "(redis-cli -u URL ping); workers reconnect by themselves once it is back"
            )
        return BrokerError(
            f"Redis broker {url_without_password(self.url)}: cannot {what}: {exc}",
            hint=hint,
            subject=url_without_password(self.url),
        )

    # -- submit ----------------------------------------------------------------

    def submit_many(self, specs: Sequence[TaskSpec], *, watch: bool = False) -> list[Submitted]:
        if not specs:
            return []
        now = time.time()
        records: list[Submitted] = []
        ids: list[str] = []
        # watched in the same call: the task has its notice channel before it can end
        watcher = self.notice_channel if watch else ""
        args: list[Any] = [self.prefix, repr(now), self._ttl, watcher]
        for s in specs:
            record = TaskRecord(
                id=new_id(),
                capability=s.capability,
                payload=s.payload,
                status="pending",
                priority=int(s.priority),
                max_attempts=s.max_attempts,
                idempotency_key=s.idempotency_key,
                created_at=now,
                updated_at=now,
                timeout_s=s.timeout_s,
                meta=s.meta,
            )
            records.append(record)
            ids.append(record.id)
            args += [
                record.id,
                s.capability,
                int(s.priority),
                json.dumps(s.payload, separators=(",", ":")),
                s.max_attempts,
                s.idempotency_key or "",
                "" if s.timeout_s is None else repr(float(s.timeout_s)),
                json.dumps(s.meta, separators=(",", ":")) if s.meta else "",
                "" if s.idempotency_key is None else input_fingerprint(s.capability, s.payload),
                _caller(s.meta),
            ]
        if watch:  # expected before they exist: a notice cannot come before its waiter
            self.result_notices().expect(ids)
        answers = self._script("submit", args, "submit tasks")
        for i, answer in enumerate(answers):
            if answer:
                if watch:
                    self.result_notices().forget(ids[i])
                records[i] = self._owner(specs[i], answer, watch=watch)
        return records

    def _owner(self, spec: TaskSpec, answer: str, *, watch: bool = False) -> Submitted:
        """What the submit script said about a key already taken (see ``submit.lua``)."""
        key = str(spec.idempotency_key)
        if answer == "!":
            return IdempotencyKeyReused(key)
        owner = answer.removeprefix("?")
        if watch:  # before it is read: if it ends later, the notice comes
            self.result_notices().expect([owner])
            self.watch([owner])
        found = self.get(owner)
        reused = (
            found is not None
            and answer.startswith("?")
            and input_fingerprint(found.capability, found.payload)
            != input_fingerprint(spec.capability, spec.payload)
        )
        if watch and (found is None or reused):
            self.result_notices().forget(owner)
        if found is None:  # the owner expired since: the key is free now
            return self.submit_many([spec], watch=watch)[0]
        if reused:
            return IdempotencyKeyReused(key)
        return found

    # -- results ---------------------------------------------------------------

    def result_notices(self) -> ResultNotices:
        """Subscribes this process to its notice channel on first use (one connection)."""
        with self._listener_lock:
            if self._listener is None:
                self._listener = _NoticeListener(self, self.notice_channel)
            return self._listener.notices

    def listen_in(self, loop: asyncio.AbstractEventLoop) -> None:
        """The notice subscription is read by ``loop`` (call it from there), not by a
        thread (see :class:`_Subscription`)."""
        self.result_notices()
        with self._listener_lock:
            listener = self._listener
        if listener is not None:
            listener.read_on(loop)

    def watch(self, task_ids: Sequence[str]) -> list[TaskStatus | None]:
        if not task_ids:
            return []
        self.result_notices()
        statuses = self._script("watch", self._watch_args(task_ids), "watch tasks")
        return [cast("TaskStatus", s) if s else None for s in statuses]

    def _watch_args(self, task_ids: Sequence[str]) -> list[Any]:
        return [self.prefix, self.notice_channel, self._ttl, *task_ids]

    # -- claim -----------------------------------------------------------------

    def begin_ack_and_claim(
        self, items: Sequence[tuple[Claim, Any]], options: ClaimOptions
    ) -> PendingClaims:
        """Write the ack script and the claim script on one connection; read them later."""
        return self._begin_ack_and_claim(items, options)

    def _begin_ack_and_claim(
        self, items: Sequence[tuple[Claim, Any]], options: ClaimOptions
    ) -> _PendingClaims:
        caps = options.capabilities
        receipt = new_id()
        calls: list[tuple[str, list[Any]]] = [("ack", self._ack_args(items))] if items else []
        args: list[Any] = [
            self.prefix,
            options.consumer,
            options.limit,
            repr(time.time()),
            max(1, int(options.visibility_timeout_s * 1000)),
            receipt,
            random.randrange(1 << 16),  # noqa: S311 - fairness, not security
            self._ttl,
            -1 if caps is None else len(caps),
            *(caps or ()),
        ]
        calls.append(("claim", args))
        return _PendingClaims(self, self._send(calls, "ack and claim tasks"), receipt)

    def ack_and_claim(
        self, items: Sequence[tuple[Claim, Any]], options: ClaimOptions
    ) -> list[Claim]:
        """Ack ``items`` and claim the next batch in one round trip."""
        deadline = time.monotonic() + options.block_s
        while True:
            pending = self._begin_ack_and_claim(items, options)
            claims = pending.result()
            items = []
            if claims:
                return claims
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            wait_s = min(left, _BLOCK_SLICE_S)
            if pending.retry_due is not None:  # the claim that comes after takes it
                wait_s = min(wait_s, max(0.001, pending.retry_due - time.time()))
            claims = self._block(options, pending.streams, wait_s)
            if claims:
                return claims

    def _block(self, options: ClaimOptions, streams: Sequence[str], wait_s: float) -> list[Claim]:
        """Wait on ``streams`` (the claim that found nothing names them) and on
        ``P:wake`` with ``XREADGROUP BLOCK``; adopt what arrives. A wake-up alone
        returns nothing: the caller claims again at once."""
        if not streams:
            time.sleep(min(wait_s, 0.05))
            return []
        consumer = options.consumer
        streams = [*streams, f"{self.prefix}:wake"]
        command = (
            "XREADGROUP", "GROUP", CONSUMER_GROUP, consumer, "COUNT", options.limit,
            "BLOCK", max(1, int(wait_s * 1000)), "STREAMS", *streams, *(">" for _ in streams),
        )  # fmt: skip
        got = self._command(command, "wait for tasks")
        if not got:
            return []
        receipt = new_id()
        args: list[Any] = [self.prefix, consumer, repr(time.time()), receipt, self._ttl]
        for stream, entries in got:  # [[stream, [[entry id, [field, value, ...]], ...]]]
            for eid, fields in entries:
                args += [stream, eid, _fields(fields).get("t", "")]
        flat, lost = self._script("adopt", args, "claim tasks")
        self._lost(lost)
        return list(self._claims(flat, receipt))

    def ended_by_claims(self) -> list[tuple[str, str]]:
        return self._ended.drain()

    def _lost(self, flat: Sequence[str]) -> None:
        """Keep what a claim script ended, ``(capability, status)`` pairs flat."""
        for i in range(0, len(flat) - 1, 2):
            self._ended.add(str(flat[i]), str(flat[i + 1]))

    def _claims(self, flat: Sequence[Any], receipt: str) -> Iterator[Claim]:
        now = time.time()
        for i in range(0, len(flat), 2):
            record = _claimed(flat[i + 1], now)
            yield Claim(task=record, receipt=f"{flat[i]}|{receipt}", attempt=record.attempts)

    # -- finish ----------------------------------------------------------------

    def ack_many(self, items: Sequence[tuple[Claim, Any]]) -> None:
        if not items:
            return
        self._script("ack", self._ack_args(items), "ack tasks")

    def _ack_args(self, items: Sequence[tuple[Claim, Any]]) -> list[Any]:
        args: list[Any] = [self.prefix, repr(time.time()), self._ttl]
        for claim, result in items:
            args += [claim.task.id, _split_receipt(claim.receipt)[0], json.dumps(result)]
        return args

    def fail(
        self,
        claim: Claim,
        error: Mapping[str, Any],
        *,
        retryable: bool,
        client_fault: bool = False,
    ) -> TaskStatus:
        now = time.time()
        entry, token = _split_receipt(claim.receipt)
        due = now + self.options.retry.delay_s(claim.attempt)
        args = [
            self.prefix,
            claim.task.id,
            entry,
            token,
            "1" if retryable else "0",
            json.dumps(dict(error)),
            repr(now),
            repr(due),
            "1" if client_fault else "0",
            self._ttl,
        ]
        return cast("TaskStatus", self._script("fail", args, "record a failure"))

    def extend_many(self, claims: Sequence[Claim], visibility_timeout_s: float) -> list[bool]:
        # The idle clock restarts now; the group-wide timeout decides when it runs out.
        if not claims:
            return []
        held = self._script("extend", self._triples("0", claims), "extend claims")
        return [bool(h) for h in held]

    def release(self, claims: Sequence[Claim]) -> None:
        if claims:
            self._script("extend", self._triples("1", claims), "release claims")

    def _triples(self, release: str, claims: Sequence[Claim]) -> list[Any]:
        args: list[Any] = [self.prefix, release, repr(time.time()), self._ttl]
        for claim in claims:
            entry, token = _split_receipt(claim.receipt)
            args += [claim.task.id, entry, token]
        return args

    def recover(self, consumer: str) -> int:
        return int(self._script("recover", [self.prefix, consumer], "recover tasks"))

    # -- cancelling ------------------------------------------------------------

    def cancel(self, task_id: str) -> Cancellation | None:
        args = [self.prefix, task_id, repr(time.time()), self._ttl]
        outcome, _consumer, task = self._script("cancel", args, "cancel a task")
        if outcome == "none":
            return None
        # the task as the script left it, not read afterwards: its worker may have ended it
        return Cancellation(outcome, _record(_fields(task)))

    def cancel_requested(self, task_ids: Sequence[str]) -> set[str]:
        if not task_ids:
            return set()
        marks = self._commands(
            [("HGET", f"{self.prefix}:t:{task_id}", "cancel_requested") for task_id in task_ids],
            "read cancel requests",
        )
        return {task_id for task_id, mark in zip(task_ids, marks, strict=True) if mark}

    def listen_for_cancels(
        self, consumer: str, on_cancel: Callable[[str], None]
    ) -> Callable[[], None]:
        """Subscribes to ``P:cancel:<consumer>`` (the cancel script publishes there)."""

        def tell(messages: list[str]) -> None:
            for task_id in messages:
                if task_id:
                    on_cancel(task_id)

        listener = _Subscription(self, f"{self.prefix}:cancel:{consumer}", tell)
        return listener.close

    # -- dead letters ----------------------------------------------------------

    def redrive(self, task_id: str) -> DeadLetterChange | None:
        return self._change_dead_letter("redrive", task_id)

    def redrive_dead_letters(self, capability: str) -> int:
        return self._change_dead_letters("redrive", capability)

    def purge_dead_letter(self, task_id: str) -> DeadLetterChange | None:
        return self._change_dead_letter("purge", task_id)

    def purge_dead_letters(self, capability: str) -> int:
        return self._change_dead_letters("purge", capability)

    def _change_dead_letter(self, action: str, task_id: str) -> DeadLetterChange | None:
        args = [self.prefix, action, repr(time.time()), "id", task_id]
        # the task as the script saw it (after a redrive, before a purge), not read
        # afterwards: a worker may have claimed a redriven task in between
        outcome, task = self._script("dead", args, f"{action} a dead letter")
        if outcome == "none":
            return None
        return DeadLetterChange(outcome == "done", _record(_fields(task)))

    def _change_dead_letters(self, action: str, capability: str) -> int:
        """Walks ``P:dead`` a bounded number of entries per script call, so one call
        never holds Redis up for long whatever the number of dead letters, up to its
        last entry when the walk began (a redriven task that dies again meanwhile is
        not taken twice: a redrive of a poison capability ends)."""
        cursor, last, total, now = "", "", 0, repr(time.time())
        while True:
            args = [self.prefix, action, now, "cap", capability, cursor, _DEAD_BUDGET, last]
            cursor, count, last = self._script("dead", args, f"{action} dead letters")
            total += int(count)
            if not cursor:
                return total

    # -- streaming events ------------------------------------------------------

    def publish_events(self, task_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        bodies = [json.dumps(dict(event), separators=(",", ":")) for event in events]
        ttl_ms = max(1, int(self.options.result_ttl_s * 1000))
        keys = [f"{self.prefix}:ev:{task_id}", ttl_ms, f"{self.prefix}:w:{task_id}", task_id]
        self._script("events", [*keys, *bodies], "publish events")

    def read_events(
        self, task_id: str, after: int, *, block_s: float = 0.0, limit: int = 100
    ) -> list[tuple[int, Mapping[str, Any]]]:
        """``XREAD`` from entry ``0-<after>``; blocking waits in slices of at most 0.5 s."""
        key = f"{self.prefix}:ev:{task_id}"
        deadline = time.monotonic() + block_s
        while True:
            left = deadline - time.monotonic()
            block = () if left <= 0 else ("BLOCK", max(1, int(min(left, _BLOCK_SLICE_S) * 1000)))
            command = (
                "XREAD", "COUNT", max(1, int(limit)), *block,
                "STREAMS", key, f"0-{max(0, int(after))}",
            )  # fmt: skip
            got = self._command(command, "read events")
            if got:
                entries = got[0][1]
                return [
                    (int(eid.partition("-")[2]), json.loads(_fields(flat)["e"]))
                    for eid, flat in entries
                ]
            if not block or time.monotonic() >= deadline:
                return []

    # -- inspect ---------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        h = _fields(self._command(("HGETALL", f"{self.prefix}:t:{task_id}"), "read a task"))
        return _record(h) if h else None

    def stats(self) -> QueueStats:
        now = time.time()
        flat = self._script("stats", [self.prefix, repr(now)], "read queue stats")
        now_ms, dead, n = int(flat[0]), int(flat[1]), int(flat[2])
        pending: dict[str, int] = {}
        later: dict[str, int] = {}
        by_band: dict[str, dict[int, int]] = {}

        def count(cap: str, band: int, waiting: int) -> None:
            pending[cap] = pending.get(cap, 0) + waiting
            bands = by_band.setdefault(cap, {})
            bands[band] = bands.get(band, 0) + waiting

        running = 0
        age = 0.0
        for i in range(3, 3 + 8 * n, 8):
            cap, band, waiting, in_flight, first, backing_off, not_due = (
                flat[i],
                int(flat[i + 1]),
                int(flat[i + 2]),
                int(flat[i + 3]),
                int(flat[i + 4]),
                int(flat[i + 5]),
                int(flat[i + 6]),
            )
            if waiting + backing_off:  # retries waiting out their backoff count as queued
                count(cap, band, waiting + backing_off)
            if not_due:
                later[cap] = later.get(cap, 0) + not_due
            running += in_flight
            # ready since it was added to the stream (Redis's clock, as the entry ids),
            # or for a retry still in P:delayed since it came due (this client's clock)
            if first >= 0:
                age = max(age, (now_ms - first) / 1000.0)
            due_since = float(flat[i + 7])
            if due_since >= 0:
                age = max(age, now - due_since)
        return QueueStats(
            pending=pending,
            running=running,
            dead=dead,
            oldest_pending_age_s=age,
            pending_by_priority=by_band,
            backing_off=later,
        )

    def dead_letters(self, limit: int = 100) -> list[TaskRecord]:
        command = ("XREVRANGE", f"{self.prefix}:dead", "+", "-", "COUNT", max(1, int(limit)))
        entries = self._command(command, "read dead letters")
        ids = [_fields(fields).get("t", "") for _, fields in entries]
        if not ids:
            return []
        hashes = self._commands(
            [("HGETALL", f"{self.prefix}:t:{task_id}") for task_id in ids], "read dead letters"
        )
        return [_record(h) for h in map(_fields, hashes) if h]

    def list_tasks(self, query: TaskQuery) -> TaskPage:
        """Walks the list index newest first (see "Listing" above), a bounded number of
        entries per script call, and a few calls per page."""
        tasks: list[TaskSummary] = []
        cursor = query.cursor or ""
        for _ in range(_LIST_CALLS):
            wanted = query.limit - len(tasks)
            args = [
                self.prefix,
                cursor,
                wanted,
                _LIST_BUDGET,
                query.status or "",
                query.capability or "",
                query.caller or "",
            ]
            flat = self._script("list", args, "list tasks")
            cursor, rows = str(flat[0]), flat[1:]
            tasks += (_summary(row[:10]) for row in rows)
            if not cursor or len(rows) == wanted:
                break
        return TaskPage(tuple(tasks), cursor or None)

    def ping(self) -> bool:
        try:
            return bool(self._command(("PING",), "ping") == "PONG")
        except BrokerError:
            return False

    def close(self) -> None:
        with self._listener_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._hot.close()
        self._pool.close()


class _Subscription:
    """One subscription to a channel, on a connection of its own, read by a thread that
    hands what is published to ``handle`` (as a list, one message at a time; it must not
    raise).

    When the connection breaks (Redis restarted), what was published meanwhile is lost:
    the thread connects and subscribes again (backing off from 50 ms to 2 s while it
    cannot), then calls ``on_reconnect``. A subscription that heard nothing for a while
    pings Redis, so a connection that died silently is found out and made afresh.

    An event loop can take the reading over (:meth:`read_on`, an HTTP server's): a
    message then reaches ``handle`` on that loop, with no thread between the socket and
    the requests waiting for it. The thread only waits meanwhile; when the loop finds
    the connection broken or its ping unanswered, it gives the connection back, and the
    thread makes it afresh as above and hands it to the loop again. (Not over TLS: a
    readable socket need not hold a whole TLS record.)
    """

    def __init__(
        self,
        broker: RedisBroker,
        channel: str,
        handle: Callable[[list[str]], None],
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self._broker = broker
        self._channel = channel
        self._handle = handle
        self._on_reconnect = on_reconnect
        self._closed = threading.Event()
        self._conn = broker._pool.new()
        #: the event loop that reads the subscription (None: the thread does).
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the loop's reader is on the socket: only the loop may close it then.
        self._attached = False
        self._fd = -1
        self._timer: Any = None
        #: set when the loop gave the connection back (it broke), and by close().
        self._given_back = threading.Event()
        self._heard = time.monotonic()
        self._pinged: float | None = None
        try:
            # the confirmation read: from here on, nothing published to it is missed
            self._subscribe()
        except RedisError as exc:
            self._conn.close()
            raise broker._error(f"subscribe to {channel}", exc) from exc
        self._thread = threading.Thread(target=self._run, name="crank-subscription", daemon=True)
        self._thread.start()

    def read_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on ``loop`` reads the subscription (the thread hands the connection
        over within half a second); a TLS connection stays with the thread."""
        if self._loop is None and not self._conn.address.tls:
            self._loop = loop

    def _subscribe(self) -> None:
        self._conn.send([("SUBSCRIBE", self._channel)])
        reply = self._conn.read()
        if isinstance(reply, ReplyError):
            raise reply
        if not (isinstance(reply, list) and reply and reply[0] == "subscribe"):
            self._conn.close()
            raise ConnectionLost(f"Redis answered SUBSCRIBE with {reply!r}")

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        conn = self._conn
        broken = False
        pause = 0.05
        #: when the subscription was lost (None: it is up).
        lost: float | None = None
        while not self._closed.is_set():
            try:
                if broken:
                    self._subscribe()
                    broken, pause = False, 0.05
                    self._heard, self._pinged = time.monotonic(), None
                    if self._on_reconnect is not None:
                        self._on_reconnect()
                    if lost is not None:
                        down_s = round(time.monotonic() - lost, 3)
                        extra = {"channel": self._channel, "down_s": down_s}
                        _log.info("redis_subscription_restored", extra=extra)
                        lost = None
                if self._loop is not None:
                    broken = self._hand_to_loop(self._loop)
                    if broken and lost is None:
                        lost = self._lost("the connection broke")
                    continue
                self._take(conn.poll(_BLOCK_SLICE_S))
                self._check_health(conn.send_nowait)
            except RedisError as exc:
                conn.close()
                if self._closed.is_set():
                    break
                broken = True
                if lost is None:
                    lost = self._lost(str(exc))
                self._closed.wait(pause)
                pause = min(pause * 2, 2.0)
        if not self._attached:
            conn.close()

    def _lost(self, why: str) -> float:
        """Say once per outage that the subscription is down (what it tells is missed
        until it is back); when it broke."""
        _log.warning("redis_subscription_lost", extra={"channel": self._channel, "error": why})
        return time.monotonic()

    def _hand_to_loop(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Give the connection to ``loop`` and wait until it gives it back: True when it
        did because the connection broke (False: closed, or the loop is gone)."""
        self._given_back.clear()
        try:
            loop.call_soon_threadsafe(self._attach)
        except RuntimeError:  # the loop was closed: the thread reads again
            self._loop = None
            return False
        self._given_back.wait()
        return not self._closed.is_set()

    # -- either reader -----------------------------------------------------------------

    def _take(self, reply: Any) -> None:
        """Hand on ``reply`` and every reply already parsed after it (``False``: none).
        Each message is handed on as it is read: the waiter it wakes does not wait for
        another look at the socket first."""
        while reply is not False:
            self._heard, self._pinged = time.monotonic(), None
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == "message":
                self._handle([reply[2]])
            reply = self._conn.buffered()

    def _check_health(self, send: Callable[[Sequence[tuple[Any, ...]]], None]) -> None:
        now = time.monotonic()
        if self._pinged is not None and now - self._pinged > self._conn.timeouts.read_s:
            raise ConnectionLost("Redis did not answer a PING on the subscription")
        if self._pinged is None and idle_too_long(now - self._heard):
            send([("PING",)])
            self._pinged = now

    # -- the loop ----------------------------------------------------------------------

    def _attach(self) -> None:
        loop = self._loop
        if loop is None or self._closed.is_set() or not self._conn.connected:
            self._given_back.set()
            return
        self._conn.set_nonblocking()
        self._fd = self._conn.fileno()
        loop.add_reader(self._fd, self._readable)
        self._attached = True
        self._timer = loop.call_later(_BLOCK_SLICE_S, self._tick)
        self._readable()  # what the thread had received and not handed on yet

    def _readable(self) -> None:
        conn = self._conn
        try:
            self._take(conn.buffered())
            while conn.receive_nowait():
                self._take(conn.buffered())
        except RedisError:
            self._give_back()

    def _tick(self) -> None:
        try:
            self._check_health(self._conn.send_nowait)
        except RedisError:
            self._give_back()
            return
        if self._loop is not None:
            self._timer = self._loop.call_later(_BLOCK_SLICE_S, self._tick)

    def _give_back(self) -> None:
        """On the loop: stop reading, close the connection, wake the thread."""
        if self._attached and self._loop is not None:
            self._attached = False
            self._loop.remove_reader(self._fd)
            if self._timer is not None:
                self._timer.cancel()
            self._conn.close()
        self._given_back.set()

    def close(self) -> None:
        self._closed.set()
        loop = self._loop
        if self._attached and loop is not None:
            if loop.is_closed():  # nothing watches the socket any more
                self._attached = False
                self._conn.close()
            elif running_loop() is loop or not loop.is_running():
                self._give_back()
            else:  # the socket closes on its loop, once no longer watched there
                loop.call_soon_threadsafe(self._give_back)
        self._given_back.set()
        self._conn.wake()  # a read in the thread returns at once
        self._thread.join(timeout=2)


class _NoticeListener(_Subscription):
    """This process's result notices: one subscription, each notice handed to
    :class:`ResultNotices`; after a reconnection every waiter reads its task."""

    def __init__(self, broker: RedisBroker, channel: str) -> None:
        self.notices = ResultNotices()
        super().__init__(broker, channel, self._deliver, self.notices.wake_all)

    def _deliver(self, messages: list[str]) -> None:
        notices = [n for n in map(Notice.decode, messages) if n is not None]
        if notices:
            self.notices.deliver(notices)


class _Inflight:
    """Script calls written to one connection whose replies are not read yet."""

    def __init__(
        self,
        broker: RedisBroker,
        conn: Any,
        calls: Sequence[tuple[str, list[Any]]],
        what: str,
    ) -> None:
        self._broker = broker
        self._conn = conn
        self._calls = calls
        self._what = what

    def replies(self) -> list[Any]:
        """Read every reply (keeping the connection in step), then give it back."""
        broker, conn = self._broker, self._conn
        replies: list[Any] = []
        try:
            replies = [conn.read() for _ in self._calls]
        except BaseException as exc:
            conn.close()
            if isinstance(exc, RedisError):
                raise broker._error(self._what, exc) from exc
            raise
        finally:
            broker._hot.give(conn)
        for i, reply in enumerate(replies):
            if isinstance(reply, ReplyError) and reply.no_script and self._calls[i][0]:
                name, args = self._calls[i]
                # Redis forgot it (it restarted): EVAL runs it and caches it again
                replies[i] = broker._command(("EVAL", _lua(name), 0, *args), self._what)
        failure = next((r for r in replies if isinstance(r, ReplyError)), None)
        if failure is not None:
            raise broker._error(self._what, failure)
        return replies


class _HotConnection:
    """One connection kept out of the pool for the calls on a task's way (submit,
    claim, ack): taking a connection from a pool and giving it back costs about as
    much as the round trip to a local Redis. A call that finds it busy (another
    thread, or a worker's claim in flight) takes one from the pool. A connection that
    broke is closed; its next use connects again.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._pid = os.getpid()

    def take(self) -> Connection:
        """The hot connection, or one of the pool's while it is busy."""
        if not self._lock.acquire(blocking=False):
            return self._pool.take()
        if self._conn is None or self._pid != os.getpid():  # none yet, or forked
            self._pid = os.getpid()
            self._conn = self._pool.new()
        conn = self._conn
        # as the pool checks its connections: one Redis closed (it restarted) or one
        # with a stray reply is connected afresh, before anything is written to it
        conn.drop_if_stale()
        return conn  # it connects (again) when it is written to

    def give(self, conn: Connection) -> None:
        if conn is self._conn:
            self._lock.release()
        else:
            self._pool.give(conn)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _PendingClaims:
    def __init__(self, broker: RedisBroker, inflight: _Inflight, receipt: str) -> None:
        self._broker = broker
        self._inflight = inflight
        self._receipt = receipt
        #: after a claim that found nothing: the streams it looked at (to block on),
        #: and when the first retry backing off comes due (``time.time()``'s clock).
        self.streams: list[str] = []
        self.retry_due: float | None = None

    def result(self) -> list[Claim]:
        flat, streams, lost, due = self._inflight.replies()[-1]
        self._broker._lost(lost)
        if not flat:
            self.streams = list(streams)
            self.retry_due = float(due) if due else None
            return []
        return list(self._broker._claims(flat, self._receipt))
