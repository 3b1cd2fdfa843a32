"""An OTA test session: what the Robot keywords and the pytest fixtures do, in one place.

The session owns one asyncio loop for the whole run. On an emulated testbed that loop's clock is
virtual (looptime): it jumps from one timer to the next, so an hour of OTA on air passes in seconds
and the same seed gives the same timeline. Keywords are synchronous; each runs the loop until its own
work is done, so testbed time passes only while the harness waits for something.

Data flows one way: testbed (starter) -> hub (zigpy) -> this scenario layer -> evidence recorder ->
reports. Device misbehaviour raises ``DeviceFault`` (FAIL), bench trouble ``BenchError`` (ERROR),
unusable input ``BadInputError``; every verdict lands in the run record with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import looptime
import zigpy.device
import zigpy.types as t
import zigpy.util

from harness import __version__
from harness.errors import BadInputError, BenchError, DeviceFault, HarnessError
from harness.evidence.keys import NetworkKey
from harness.evidence.record import RunRecord, TestRecord, TransferRecord, utc_now
from harness.evidence.recorder import Recorder
from harness.hub.hub import Hub
from harness.hub.ota_server import OtaServerPolicy, OtaTransfer, TransferOutcome, TransferProgress
from harness.ota.image import OtaImage, build_image_of_total_size, load_image
from harness.ota.manifest import make_manifest
from harness.ota.signing import SIGNATURE_LENGTH, load_signing_key, sign_image
from harness.power.driver import PowerDriver
from harness.scenarios.ch import ChKeywords
from harness.scenarios.flash_sweep import parse_paths, run_flash_sweep, sweep_images
from harness.scenarios.progress import NoProgress, ProgressSink
from harness.scenarios.values import format_version, parse_budget, parse_size, parse_version
from harness.scenarios.verdicts import Verdict, VerdictResult, classify, worst
from harness.testbed.loader import load_testbed
from harness.testbed.model import DeviceSpec, TestbedSpec
from harness.testbed.starter import StartedTestbed, check_behaviours, start_testbed

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_IMAGE_SIZE = 200 * 1024
JOIN_BUDGET_S = 600.0
REBOOT_BUDGET_S = 300.0
POWER_CYCLE_OFF_S = 5.0
# After a download that must wait for a command, how long to watch that the device does not activate.
ACTIVATION_SETTLE_S = 60.0


# Each cut point of a download sweep is an upgrade to a newer version (third byte + 1).
MAX_SWEEP_POINTS = 255


@dataclass
class _Running:
    """One transfer in progress."""

    device: str
    image: OtaImage
    image_path: Path
    from_version: int
    transfer: OtaTransfer
    record: TransferRecord
    task: asyncio.Task[TransferOutcome] | None = None
    progressed_at: float = 0.0
    progressed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _TestState:
    record: TestRecord
    verdicts: list[VerdictResult] = field(default_factory=list)


class OtaSession(ChKeywords):
    """A run: one evidence folder, one loop, any number of testbeds started and stopped in turn.

    The CH-under-test keywords (``ch_*``, ``wait_for_ch_alert``) come from
    :class:`~harness.scenarios.ch.ChKeywords`.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        seed: int | None = None,
        progress: ProgressSink | None = None,
        command: str = "",
        policy: OtaServerPolicy | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.progress = progress or NoProgress()
        self.policy = policy or OtaServerPolicy()
        # Nothing waits on real I/O on the emulated testbed, so time may jump at once
        # (looptime otherwise idles 42 loop cycles before each jump).
        self.loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
        self.wall_start = time.time()
        self.recorder = Recorder(self.run_dir, virtual_clock=self.loop.time)
        self.record = RunRecord(
            run_id=self.run_dir.name,
            harness_version=__version__,
            testbed_name="",
            testbed_file="",
            testbed_sha256="",
            seed=seed if seed is not None else -1,
            started_wall=utc_now(),
            ended_wall=None,
            command=command,
            tests=[],
            transfers=[],
        )
        self.testbed: StartedTestbed | None = None
        self.spec: TestbedSpec | None = None
        self.hub: Hub | None = None
        self.images: dict[str, OtaImage] = {}
        self.running: dict[str, _Running] = {}
        self.power_cuts: dict[str, list[float]] = {}
        self.reporting: dict[str, _ReportingSetUp] = {}
        self._test: _TestState | None = None
        self._closed = False
        self._save_record()

    # ------------------------------------------------------------------------------ plumbing
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one step on the session's loop (testbed time passes only here)."""
        if self._closed:
            coro.close()
            raise BenchError("the session is closed")
        return self.loop.run_until_complete(coro)

    def _save_record(self) -> None:
        self.record.save(self.run_dir / "run.json", redact=self.recorder.redact)

    def _event(self, what: str, **detail: Any) -> None:
        self.recorder.event("harness", what, **detail)

    def _require_testbed(self) -> tuple[StartedTestbed, TestbedSpec]:
        if self.testbed is None or self.spec is None:
            raise BenchError("no testbed is running: call Start Testbed first")
        return self.testbed, self.spec

    def _require(self) -> tuple[StartedTestbed, TestbedSpec, Hub]:
        testbed, spec = self._require_testbed()
        if self.hub is None:
            if spec.ch_under_test:
                raise BadInputError(
                    "is none, so the harness has no ZigBee hub of its own: this keyword needs one. "
                    f"Here {spec.coordinator.name} is a CH under test: use CH Update Firmware, "
                    "Wait For CH Alert, CH Activate Firmware and CH Read Firmware Version",
                    file=str(spec.source) if spec.source else None,
                    field="radio.type",
                    value="none",
                )
            raise BenchError("no testbed is running: call Start Testbed first")
        return testbed, spec, self.hub

    def _device_spec(self, name: str) -> DeviceSpec:
        _, spec = self._require_testbed()
        return spec.device(name)

    # ------------------------------------------------------------------------- test records
    def begin_test(self, name: str, suite: str) -> None:
        """Start recording a test case (Robot listener / pytest hook call this)."""
        self._test = _TestState(
            TestRecord(
                name=name,
                suite=suite,
                verdict="RUNNING",
                reason="",
                started_wall=utc_now(),
                ended_wall=None,
                evidence=[],
            )
        )
        self.record.tests.append(self._test.record)
        self._event("test-started", test=name, suite=suite)
        self._save_record()

    def note_verdict(self, result: VerdictResult) -> None:
        """Attach a verdict to the running test (the worst one decides the test)."""
        if self._test is not None:
            self._test.verdicts.append(result)
        self._event("verdict", verdict=str(result.verdict), reason=result.reason)

    def note_exception(self, exc: BaseException) -> Verdict:
        """Classify an exception a step raised, record it, and say which verdict it leads to."""
        verdict = classify(exc)
        if isinstance(exc, BadInputError):
            self.record.bad_input = True
        self.note_verdict(VerdictResult(verdict, str(exc)))
        return verdict

    def end_test(self, passed: bool, message: str = "") -> Verdict:
        """Close the running test: its verdict is the worst noted, FAIL if it failed without one."""
        state = self._test
        if state is None:
            return Verdict.PASS if passed else Verdict.FAIL
        verdicts = [v.verdict for v in state.verdicts]
        verdict = worst(verdicts)
        if not passed and verdict is Verdict.PASS:
            verdict = Verdict.FAIL
            state.verdicts.append(VerdictResult(Verdict.FAIL, message or "test failed"))
        reasons = [v.reason for v in state.verdicts if v.verdict is verdict]
        state.record.verdict = str(verdict)
        state.record.reason = reasons[-1] if reasons else (message or "all checks passed")
        state.record.ended_wall = utc_now()
        self._event("test-ended", test=state.record.name, verdict=str(verdict))
        self._test = None
        self._save_record()
        return verdict

    # ------------------------------------------------------------------------------ testbed
    def start_testbed(self, file: str | Path = "testbeds/emulated.yaml") -> None:
        """Load, validate and start a testbed; wait until every device has joined the hub's network."""
        if self.testbed is not None:
            self.stop_testbed()
        spec = load_testbed(file)
        self.spec = spec
        seed = self.seed if self.seed is not None else spec.seed
        self.record.testbed_name = spec.name
        self.record.testbed_file = str(file)
        self.record.testbed_sha256 = spec.sha256 or ""
        used = f"{spec.name} ({file}, sha256 {(spec.sha256 or '')[:12]})"
        if used not in self.record.testbeds_used:
            self.record.testbeds_used.append(used)
        self.record.seed = seed
        self._event("testbed-start", testbed=spec.name, file=str(file), sha256=spec.sha256, seed=seed)
        key = spec.network_key_bytes
        if key is not None and key not in (k.key for k in self.recorder.network_keys):
            # evidence/zigbee_pc_keys lets Wireshark and tshark decode the secured capture.
            self.recorder.add_network_key(NetworkKey(key, spec.name, spec.network_key_sequence))
        self.run(self._start(spec, seed))
        self._save_record()

    async def _start(self, spec: TestbedSpec, seed: int) -> None:
        testbed = await start_testbed(spec, self.loop, seed=seed)
        testbed.add_frame_sink(self._on_frame)
        testbed.add_log_sink(self._on_device_log)
        self.testbed = testbed
        if testbed.app is None:  # the CH is a device under test: no hub of the harness's own
            await self._start_ch(JOIN_BUDGET_S)
            return
        self.hub = Hub(testbed.app)
        await self.hub.start()
        for power in testbed.power.values():
            await power.restore()
        for name, device in spec.devices.items():
            if name == spec.radio.plays or not device.commissioned:
                continue  # a factory-new device joins only once permitted (Permit Joining With Install Code)
            await self.hub.wait_until_joined(self._ieee(device.ieee_bytes), JOIN_BUDGET_S)
            self._event("device-joined", device=name)

    def _on_frame(self, frame: bytes, sender: str, receiver: str, medium: str) -> None:
        self.recorder.frame(frame, hop_src=sender, hop_dst=receiver, medium=medium)

    def _on_device_log(self, virtual_time: float, device: str, line: str) -> None:
        self.recorder.serial_line(device, line, virtual_time=virtual_time)

    @staticmethod
    def _ieee(ieee_bytes: bytes) -> t.EUI64:
        return t.EUI64(ieee_bytes)

    def stop_testbed(self) -> None:
        """Stop the running testbed: cancel transfers, power everything off, stop the hub."""
        if self.testbed is None:
            return
        self.run(self._stop())
        self._event("testbed-stop")
        self._save_record()

    async def _stop(self) -> None:
        for running in list(self.running.values()):
            if running.task is not None:
                running.task.cancel()
                with contextlib.suppress(BaseException):
                    await running.task
        self.running.clear()
        if self.hub is not None:
            await self.hub.stop()
        if self.testbed is not None:
            self.testbed.shutdown()
        self.testbed = None
        self.hub = None
        self.ch_monitor = None
        # Let cancelled timers and tasks unwind so nothing lingers into the next testbed.
        await asyncio.sleep(0)

    def close(self) -> None:
        """End the run: stop the testbed, finalise the timeline and the run record."""
        if self._closed:
            return
        with contextlib.suppress(HarnessError):
            self.stop_testbed()
        self.record.ended_wall = utc_now()
        self._save_record()
        self.recorder.close()
        self._closed = True
        _close_loop(self.loop)

    # ------------------------------------------------------------------------------- images
    def build_firmware_image(
        self,
        device: str,
        version: str | int,
        size: str | int = DEFAULT_IMAGE_SIZE,
        stack_version: int | None = None,
        form: str = "zigbee",
        p2p_protocol: int | str | None = None,
        behaviours: str | list[str] | tuple[str, ...] | None = None,
        sign_key: str | Path | None = None,
    ) -> Path:
        """Build an OTA image for ``device`` (its manufacturer code and image type) and return its path.

        The image's firmware starts with a manifest (docs/firmware-manifest.md): its version, the
        stack version, the P2P protocol ``p2p_protocol`` (None: the device keeps its own) and the
        emulated ``behaviours`` (defect names, a list or a comma-separated string; none: healthy).
        With ``sign_key`` (a PEM ECDSA P-256 private key) the image ends in a signature sub-element
        (docs/signing.md; zigbee form only); ``size`` counts it.
        """
        spec = self._device_spec(device)
        file_version = parse_version(version)
        total = parse_size(size)
        if form not in ("zigbee", "gbcs"):
            raise BadInputError("must be 'zigbee' or 'gbcs'", field="form", value=form)
        stack = spec.stack_version if stack_version is None else int(stack_version)
        names = _behaviour_names(behaviours)
        check_behaviours(names)
        manifest = make_manifest(
            firmware_version=file_version,
            stack_version=stack,
            p2p_protocol=_p2p_protocol(p2p_protocol),
            behaviours=names,
        )
        key = load_signing_key(sign_key) if sign_key is not None else None
        if key is not None and form != "zigbee":
            raise BadInputError(
                "needs form=zigbee: a gbcs body has no sub-elements", field="sign_key", value=str(sign_key)
            )
        image = build_image_of_total_size(
            total - (SIGNATURE_LENGTH + 6 if key is not None else 0),
            manufacturer_code=spec.manufacturer_code,
            image_type=spec.image_type,
            file_version=file_version,
            stack_version=stack,
            header_string=f"{spec.type} {format_version(file_version).split()[0]}",
            form=form,
            seed=file_version ^ (spec.image_type << 32),
            manifest=manifest,
        )
        if key is not None:
            image = sign_image(image, key)
        data = image.serialize()
        path = self.recorder.add_image(data, f"{device}-0x{file_version:08X}.{form}.ota")
        self.images[str(path)] = image
        self._event(
            "image-built",
            device=device,
            path=str(path),
            file_version=f"0x{file_version:08X}",
            size=len(data),
            form=form,
            signed=key is not None,
        )
        return path

    def load_firmware_image(self, path: str | Path) -> Path:
        """Read and check an OTA file from disk (bad files are rejected with the reason); return its path."""
        parsed = load_image(Path(path))
        for warning in parsed.warnings:
            self._event("image-warning", path=str(path), warning=warning)
        stored = self.recorder.add_image(parsed.image.serialize(), Path(path).name)
        self.images[str(stored)] = parsed.image
        self.images[str(path)] = parsed.image
        return stored

    def _image(self, image: str | Path) -> OtaImage:
        key = str(image)
        if key not in self.images:
            self.load_firmware_image(image)
        return self.images[key]

    # -------------------------------------------------------------------------------- OTA
    def offer_firmware_image(self, device: str, image: str | Path, activation: str = "now") -> None:
        """Tell ``device`` an image waits for it and serve it as the device asks (runs in the background).

        ``activation`` is the upgrade time given in the Upgrade End Response: ``now``, a delay
        such as ``10min``, or ``on-command`` (0xFFFFFFFF: wait for `Activate Firmware`, as GBCS's
        separate Activate Firmware does).
        """
        self._device_spec(device)
        upgrade_time: float | None
        if activation.strip().lower() == "on-command":
            upgrade_time = None
        elif activation.strip().lower() == "now":
            upgrade_time = 0.0
        else:
            upgrade_time = parse_budget(activation, field="activation")
        ota_image = self._image(image)
        running = self.running.get(device)
        if running is not None and running.task is not None and not running.task.done():
            raise BadInputError(
                "already has a transfer running; wait for it first", field="device", value=device
            )
        self.run(self._offer(device, ota_image, Path(image), replace(self.policy, upgrade_time=upgrade_time)))

    async def _offer(self, device: str, image: OtaImage, path: Path, policy: OtaServerPolicy) -> _Running:
        _, spec, hub = self._require()
        dev_spec = spec.device(device)
        zdev = hub.device(self._ieee(dev_spec.ieee_bytes))
        if zdev is None:
            raise DeviceFault(f"{device} has not joined the network, so nothing can be offered to it")
        from_version = await hub.read_ota_attribute(zdev, "current_file_version")
        data = image.serialize()
        record = TransferRecord(
            device=device,
            image_file=str(path.relative_to(self.run_dir))
            if path.is_relative_to(self.run_dir)
            else str(path),
            image_sha256=_sha256(data),
            image_size=len(data),
            from_version=int(from_version),
            to_version=image.header.file_version,
            block_size=policy.block_size,
            blocks=0,
            retries=0,
            started_virtual_s=self.loop.time(),
            ended_virtual_s=None,
            started_wall=utc_now(),
            ended_wall=None,
            last_offset=0,
            verdict="RUNNING",
            reason="offered",
        )
        self.record.transfers.append(record)
        transfer = OtaTransfer(
            zdev,
            device,
            image,
            policy,
            on_progress=self._on_progress,
            on_event=lambda what, detail: self._event(what, **detail),
        )
        running = _Running(
            device=device,
            image=image,
            image_path=path,
            from_version=int(from_version),
            transfer=transfer,
            record=record,
            progressed_at=self.loop.time(),
        )
        self.running[device] = running
        self._event(
            "offer",
            device=device,
            from_version=f"0x{int(from_version):08X}",
            to_version=f"0x{image.header.file_version:08X}",
            image=record.image_file,
            forced=policy.force,
        )
        self.progress.started(device, len(data), self.loop.time())
        transfer.__enter__()
        running.task = self.loop.create_task(self._serve(running))
        await transfer.offer()
        return running

    def device_should_refuse_image(
        self, device: str, image: str | Path, budget: str | float = "30min"
    ) -> VerdictResult:
        """Offer ``image`` to ``device`` whatever it says it is, and check that it does not install it.

        For negative tests: an image for another manufacturer, image type or hardware version, or
        one the device must refuse for its own reasons. PASS: the device asked for it and then
        refused (did not download it, or ended with an error status) and still runs its old version.
        FAIL: it downloaded and accepted the image. INCONCLUSIVE: it never asked, so its check
        never ran.
        """
        seconds = parse_budget(budget)
        self._device_spec(device)
        ota_image = self._image(image)
        forced = replace(self.policy, force=True, stall_timeout=seconds)
        running = self.run(self._offer(device, ota_image, Path(image), forced))
        result = self.run(self._refusal(running, seconds))
        self._conclude(running, result)
        return result

    async def _refusal(self, running: _Running, budget: float) -> VerdictResult:
        assert running.task is not None
        _, _, hub = self._require()
        try:
            outcome = await asyncio.wait_for(asyncio.shield(running.task), budget + 1.0)
        except TimeoutError:
            outcome = running.transfer.outcome
        finally:
            running.task.cancel()
            with contextlib.suppress(BaseException):
                await running.task
        if outcome.status == "upgrade-end-success":
            return VerdictResult(
                Verdict.FAIL,
                f"accepted an image it must refuse: downloaded all "
                f"{running.record.image_size} bytes and reported it valid",
            )
        if outcome.queries == 0:
            return VerdictResult(
                Verdict.INCONCLUSIVE,
                "the device never asked for the image, so its own check was not exercised",
            )
        zdev = hub.device(self._ieee(self._device_spec(running.device).ieee_bytes))
        if zdev is None:
            return VerdictResult(Verdict.FAIL, "the device left the network after the offer")
        version = int(await hub.read_ota_attribute(zdev, "current_file_version"))
        if version != running.from_version:
            return VerdictResult(
                Verdict.FAIL, f"runs {format_version(version)} after an offer it had to refuse"
            )
        how = (
            f"ended the download with status 0x{outcome.device_status:02X}"
            if outcome.status == "device-reported-failure"
            else f"requested {outcome.blocks} blocks and no Upgrade End"
        )
        return VerdictResult(Verdict.PASS, f"refused the image ({how}); still runs {format_version(version)}")

    async def _serve(self, running: _Running) -> TransferOutcome:
        try:
            return await running.transfer.finished
        finally:
            running.transfer.__exit__(None, None, None)

    def _on_progress(self, progress: TransferProgress) -> None:
        running = self.running.get(progress.device)
        if running is not None:
            running.progressed_at = progress.virtual_time
            running.record.blocks += 1
            running.record.last_offset = progress.offset + progress.size
            running.progressed.set()
        self.progress.advanced(progress.device, progress.offset + progress.size, progress.virtual_time)

    def wait_until_transfer_reaches(self, device: str, point: str | int, budget: str | float = "2h") -> int:
        """Wait until ``device`` has been served ``point`` of its image (``50%`` or a size such as
        ``64KiB``); returns the offset reached. Use it to cut power at a chosen point of a download.
        """
        seconds = parse_budget(budget)
        self._device_spec(device)
        running = self._transfer(device, "wait for")
        size = running.record.image_size
        if isinstance(point, str) and point.strip().endswith("%"):
            try:
                share = float(point.strip()[:-1])
            except ValueError:
                raise BadInputError("is not a percentage", field="point", value=point) from None
            if not 0 <= share <= 100:
                raise BadInputError("must be between 0% and 100%", field="point", value=point)
            target = int(size * share / 100)
        else:
            target = parse_size(point, field="point")
            if target > size:
                raise BadInputError(f"is past the end of the {size}-byte image", field="point", value=point)
        return self.run(self._reach(running, target, seconds))

    async def _reach(self, running: _Running, target: int, budget: float) -> int:
        assert running.task is not None
        deadline = self.loop.time() + budget
        while running.record.last_offset < target:
            if running.task.done():
                outcome = running.task.result()
                raise DeviceFault(
                    f"{running.device}: the transfer ended ({outcome.detail}) at offset "
                    f"{running.record.last_offset}, before reaching {target}"
                )
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise DeviceFault(
                    f"{running.device}: offset {running.record.last_offset} after {budget:g}s, "
                    f"short of {target}"
                )
            running.progressed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(running.progressed.wait(), remaining)
        self._event("transfer-reached", device=running.device, offset=running.record.last_offset)
        return running.record.last_offset

    def transfer_should_have_resumed(self, device: str) -> VerdictResult:
        """Check that after the last power cut during its transfer, ``device`` resumed where it stopped.

        The server's own record decides: the first block the device asked for after the cut must
        start no later than the end of the data it had been sent (no hole in the image) and at most
        1 KiB plus one block before it (it kept what it had stored, as a resuming client must).
        """
        self._device_spec(device)
        running = self._transfer(device, "check")
        cuts = [t for t in self.power_cuts.get(device, []) if t >= running.record.started_virtual_s]
        if not cuts:
            raise BadInputError("had no power cut during its transfer", field="device", value=device)
        result = self._judge_resume(running, cuts[-1])
        self.note_verdict(VerdictResult(result.verdict, f"{device}: {result.reason}"))
        if result.verdict is Verdict.FAIL:
            raise DeviceFault(f"{device}: {result.reason}")
        return result

    def _judge_resume(self, running: _Running, cut_at: float) -> VerdictResult:
        served = running.transfer.outcome.offsets
        size = running.record.image_size
        block = running.transfer.policy.block_size
        before = [offset for at, offset in served if at < cut_at]
        after = [offset for at, offset in served if at > cut_at]
        if not after:
            return VerdictResult(Verdict.FAIL, "asked for no block after the power cut")
        sent = max((offset + min(block, size - offset) for offset in before), default=0)
        resumed = after[0]
        if resumed > sent:
            return VerdictResult(
                Verdict.FAIL,
                f"resumed at offset {resumed} but had only been sent {sent} bytes: "
                f"bytes {sent}..{resumed} of its image never arrived",
            )
        if resumed < sent - 1024 - block:
            return VerdictResult(
                Verdict.FAIL,
                f"restarted at offset {resumed} after the cut at offset {sent}: "
                f"fetched {sent - resumed} bytes again (a resume re-fetches at most "
                f"1 KiB and a block)",
            )
        return VerdictResult(Verdict.PASS, f"resumed at offset {resumed} after the cut at offset {sent}")

    def _transfer(self, device: str, doing: str) -> _Running:
        self._require()
        running = self.running.get(device)
        if running is None:
            raise BadInputError(
                f"has no transfer to {doing}; offer an image first", field="device", value=device
            )
        return running

    def download_power_fail_sweep(
        self,
        device: str,
        image_size: str | int = "16KiB",
        every: str | int = "2KiB",
        off_time: str | float = "5s",
        budget: str | float = "2h",
    ) -> VerdictResult:
        """Cut the device's power at every ``every`` bytes of a download, one fresh upgrade per point.

        For each cut point the harness builds a newer image of ``image_size``, offers it, cuts the
        power once that much has been served, restores it after ``off_time`` and waits for the
        upgrade. Each point must resume where the device stopped (no hole, at most 1 KiB and a block
        fetched again) and end on the new version. Fails naming the first failing offset. Each point
        runs the download code of the firmware running then: the factory one first, then each
        point's image.
        """
        size = parse_size(image_size, field="image_size")
        step = parse_size(every, field="every")
        if not 0 < step < size:
            raise BadInputError(
                f"must be more than 0 and less than the image size ({size} bytes)", field="every", value=every
            )
        points = list(range(step, size, step))
        if len(points) > MAX_SWEEP_POINTS:
            raise BadInputError(
                f"gives {len(points)} cut points; at most {MAX_SWEEP_POINTS} (each is a new image version)",
                field="every",
                value=every,
            )
        base = self.read_firmware_version(device)
        failures: list[tuple[int, str]] = []
        for index, point in enumerate(points, 1):
            image = self.build_firmware_image(device, base + index * 0x100, size=size)
            self.offer_firmware_image(device, image)
            self.wait_until_transfer_reaches(device, point, budget)
            self.cut_power(device)
            self.wait_testbed_time(off_time)
            self.restore_power(device)
            upgraded = self.wait_until_upgrade_completes(device, budget)
            resumed = self._judge_resume(self.running[device], self.power_cuts[device][-1])
            for result in (upgraded, resumed):
                if result.verdict is not Verdict.PASS:
                    failures.append((point, result.reason))
                    break
        self._event(
            "download-power-fail-sweep",
            device=device,
            points=len(points),
            failed=len(failures),
            first_failures="; ".join(f"offset {p}: {r}" for p, r in failures[:5]),
        )
        if failures:
            point, reason = failures[0]
            raise DeviceFault(
                f"{device}: {len(failures)} of {len(points)} download cut points failed; "
                f"first at offset {point} of {size}: {reason}"
            )
        result = VerdictResult(
            Verdict.PASS,
            f"{device}: resumed and upgraded after a power cut at each of "
            f"{len(points)} points of a {size}-byte download (every {step} bytes)",
        )
        self.note_verdict(result)
        return result

    def wait_testbed_time(self, duration: str | float) -> None:
        """Let ``duration`` of testbed time pass (transfers and devices carry on meanwhile)."""
        seconds = parse_budget(duration, field="duration")
        self.run(asyncio.sleep(seconds))

    def wait_until_upgrade_completes(self, device: str, budget: str | float = "2h") -> VerdictResult:
        """Wait (in testbed time) until ``device`` runs the offered image; return the verdict.

        PASS: the device downloaded the image, activated it, rebooted and reports the new version.
        FAIL: the device refused, reported an error, stalled, or still reports the old version.
        INCONCLUSIVE: the budget ran out while the device was still making progress.
        """
        seconds = parse_budget(budget)
        self._device_spec(device)
        running = self._transfer(device, "wait for")
        try:
            result = self.run(self._wait(running, seconds))
        except DeviceFault as exc:
            # e.g. the version read-back went unanswered: the device's fault, and this transfer's verdict.
            result = VerdictResult(Verdict.FAIL, str(exc))
        except HarnessError as exc:
            # The bench broke mid-wait: the transfer record says so before the error goes up.
            self._conclude(running, VerdictResult(classify(exc), str(exc)), note=False)
            raise
        self._conclude(running, result)
        return result

    async def _wait(self, running: _Running, budget: float) -> VerdictResult:
        assert running.task is not None
        _, spec, hub = self._require()
        deadline = self.loop.time() + budget
        try:
            outcome = await asyncio.wait_for(asyncio.shield(running.task), budget)
        except TimeoutError:
            if running.transfer.outcome.queries == 0:
                return VerdictResult(
                    Verdict.INCONCLUSIVE,
                    f"the device never asked for the image (no Query Next Image) within {budget:g}s; "
                    "it may only query on its own schedule",
                )
            since = self.loop.time() - running.progressed_at
            detail = (
                f"budget of {budget:g}s spent at offset {running.record.last_offset} of "
                f"{running.record.image_size}"
            )
            if since < running.transfer.policy.stall_timeout:
                return VerdictResult(
                    Verdict.INCONCLUSIVE,
                    f"{detail}; the device was still progressing ({since:.1f}s since its last block)",
                )
            return VerdictResult(Verdict.FAIL, f"{detail}; no progress for {since:.1f}s")
        running.record.retries = outcome.repeated_blocks
        if outcome.status != "upgrade-end-success":
            return VerdictResult(Verdict.FAIL, outcome.detail)
        dev_spec = spec.device(running.device)
        ieee = self._ieee(dev_spec.ieee_bytes)
        announced = hub.announce_waiter(ieee)
        remaining = max(deadline - self.loop.time(), 1.0)
        upgrade_time = running.transfer.policy.upgrade_time
        if upgrade_time is None:
            return await self._still_waiting(running, hub, ieee)
        try:
            await asyncio.wait_for(announced, min(remaining, REBOOT_BUDGET_S + upgrade_time))
        except TimeoutError:
            rejoins = hub.trust_centre_rejoins(ieee, running.record.started_virtual_s)
            refused = [when for when, admitted in rejoins if not admitted]
            why = (
                "; it asked for a trust-centre rejoin, which the Trust Centre refused: it lost its "
                "network key across the upgrade"
                if refused
                else ""
            )
            return VerdictResult(
                Verdict.FAIL,
                "the device accepted the image but did not reboot and announce itself within the budget"
                + why,
            )
        zdev = hub.device(ieee)
        if zdev is None:
            return VerdictResult(Verdict.FAIL, "the device left the network after its reboot")
        version = int(await hub.read_ota_attribute(zdev, "current_file_version"))
        expected = running.image.header.file_version
        if version != expected:
            return VerdictResult(
                Verdict.FAIL,
                f"the device rebooted but runs {format_version(version)}, "
                f"not the offered {format_version(expected)}",
            )
        if hub.trust_centre_rejoins(ieee, running.record.started_virtual_s):
            # The Trust Centre rescued it; a CH that refuses trust-centre rejoins would have lost it.
            return VerdictResult(
                Verdict.FAIL,
                f"upgraded to {format_version(version)}, but came back by a trust-centre rejoin: it lost "
                "its network key across the upgrade (a secure rejoin with the stored key was expected)",
            )
        return VerdictResult(
            Verdict.PASS, f"upgraded from {format_version(running.from_version)} to {format_version(version)}"
        )

    async def _still_waiting(self, running: _Running, hub: Hub, ieee: t.EUI64) -> VerdictResult:
        # Told to wait (upgrade time 0xFFFFFFFF), the device must keep its old image running.
        await asyncio.sleep(ACTIVATION_SETTLE_S)
        zdev = hub.device(ieee)
        if zdev is None:
            return VerdictResult(Verdict.FAIL, "the device left the network after its download")
        version = int(await hub.read_ota_attribute(zdev, "current_file_version"))
        if version != running.from_version:
            return VerdictResult(
                Verdict.FAIL,
                f"activated although told to wait for a command (upgrade time 0xFFFFFFFF): "
                f"now runs {format_version(version)}",
            )
        return VerdictResult(
            Verdict.PASS,
            f"image downloaded and verified; still runs {format_version(version)} until told to activate",
        )

    def activate_firmware(self, device: str, budget: str | float = "10min") -> VerdictResult:
        """Tell ``device`` to activate the image it holds (GBCS Activate Firmware): an Upgrade End
        Response with upgrade time now. Fails unless it reboots into the offered version in ``budget``.
        """
        seconds = parse_budget(budget)
        self._require()
        self._device_spec(device)
        running = self.running.get(device)
        if running is None or running.task is None or not running.task.done():
            raise BadInputError(
                "has no downloaded image to activate; offer one and wait for it first",
                field="device",
                value=device,
            )
        result = self.run(self._activate(running, seconds))
        self.note_verdict(VerdictResult(result.verdict, f"{device}: {result.reason}"))
        if result.verdict is not Verdict.PASS:
            raise DeviceFault(f"{device}: {result.reason}")
        return result

    async def _activate(self, running: _Running, budget: float) -> VerdictResult:
        _, spec, hub = self._require()
        ieee = self._ieee(spec.device(running.device).ieee_bytes)
        zdev = hub.device(ieee)
        if zdev is None:
            return VerdictResult(Verdict.FAIL, "is not on the network")
        header = running.image.header
        announced = hub.announce_waiter(ieee)
        self._event("activate", device=running.device, file_version=f"0x{header.file_version:08X}")
        cluster = zdev.endpoints[1].out_clusters[0x0019]
        await cluster.upgrade_end_response(
            manufacturer_code=header.manufacturer_code,
            image_type=header.image_type,
            file_version=header.file_version,
            current_time=t.UTCTime(0),
            upgrade_time=t.UTCTime(0),
        )
        try:
            await asyncio.wait_for(announced, budget)
        except TimeoutError:
            return VerdictResult(
                Verdict.FAIL,
                f"did not reboot and announce itself within {budget:g}s of being told to activate",
            )
        version = int(await hub.read_ota_attribute(zdev, "current_file_version"))
        if version != header.file_version:
            return VerdictResult(
                Verdict.FAIL,
                f"activated but runs {format_version(version)}, not {format_version(header.file_version)}",
            )
        return VerdictResult(Verdict.PASS, f"activated {format_version(version)}")

    def _conclude(self, running: _Running, result: VerdictResult, *, note: bool = True) -> None:
        record = running.record
        record.verdict = str(result.verdict)
        record.reason = result.reason
        record.ended_virtual_s = self.loop.time()
        record.ended_wall = utc_now()
        self.progress.finished(running.device, str(result.verdict))
        if note:  # otherwise the exception that goes up is noted by whoever catches it
            self.note_verdict(
                VerdictResult(
                    result.verdict,
                    f"{running.device}: {result.reason}",
                    ("evidence/air.pcap", "timeline.parquet", record.image_file),
                )
            )
        self._save_record()

    # ---------------------------------------------------------------------------- reading
    def read_firmware_version(self, device: str) -> int:
        """Read the device's running firmware version over ZigBee (OTA CurrentFileVersion)."""
        return self.run(self._read_version(device))

    async def _read_version(self, device: str) -> int:
        zdev, hub = self._zigpy_device(device)
        return int(await hub.read_ota_attribute(zdev, "current_file_version"))

    def firmware_version_should_be(self, device: str, version: str | int) -> None:
        """Fail unless ``device`` reports ``version`` when read over ZigBee."""
        expected = parse_version(version)
        seen = self.read_firmware_version(device)
        self._event("version-read", device=device, version=f"0x{seen:08X}", expected=f"0x{expected:08X}")
        if seen != expected:
            raise DeviceFault(f"{device} runs {format_version(seen)}, expected {format_version(expected)}")

    def device_should_be_reachable(self, device: str) -> None:
        """Fail unless a ZCL read of ``device``'s Basic cluster gets an answer through every hop."""
        self.run(self._reachable(device))

    async def _reachable(self, device: str) -> None:
        zdev, hub = self._zigpy_device(device)
        _, spec, _ = self._require()
        model = await hub.read_basic_attribute(zdev, "model")
        self._event(
            "reachable",
            device=device,
            model=str(model),
            route=" -> ".join(spec.route(spec.coordinator.name, device)),
        )

    # ---------------------------------------------------------------------------- joining
    def permit_joining_with_install_code(self, device: str, duration: str | float = "3min") -> None:
        """Open the network to ``device`` alone, under the link key derived from its install code.

        The install code comes from the testbed file. The hub's Trust Centre sends the network key
        only to that device, encrypted with the key; every other device that tries is refused.
        """
        seconds = parse_budget(duration, field="duration")
        if not 1 <= seconds <= 254:
            raise BadInputError("must be between 1s and 254s (4min14s)", field="duration", value=duration)
        dev_spec = self._device_spec(device)
        code = dev_spec.install_code_bytes
        if code is None:
            raise BadInputError(
                "has no install_code in the testbed file; add the code printed on its label",
                field=f"devices.{device}.install_code",
                value=device,
            )
        _, _, hub = self._require()
        key = zigpy.util.convert_install_code(code)
        self._event("permit-joining", device=device, duration_s=seconds)
        self.run(hub.app.permit_with_link_key(self._ieee(dev_spec.ieee_bytes), key, int(seconds)))

    def wait_until_joined(self, device: str, budget: str | float = "5min") -> None:
        """Wait until ``device`` has joined the hub's network and answered zigpy's interview."""
        seconds = parse_budget(budget)
        dev_spec = self._device_spec(device)
        _, _, hub = self._require()
        self.run(hub.wait_until_joined(self._ieee(dev_spec.ieee_bytes), seconds))
        self._event("device-joined", device=device)

    # -------------------------------------------------------------------------- reporting
    def configure_reporting(
        self,
        device: str,
        cluster: str | None = None,
        attribute: str | None = None,
        interval: str | float = "60s",
    ) -> None:
        """Bind the device's cluster to the hub and ask it to report ``attribute`` every ``interval``.

        Defaults: the Metering cluster's CurrentSummationDelivered on a meter, else the Basic
        cluster's SW build id. The device keeps bindings and reporting in flash, so a healthy
        device still reports after a power cut or an upgrade (see Device Should Keep Reporting).
        """
        seconds = parse_budget(interval, field="interval")
        if not 1 <= seconds <= 65534:
            raise BadInputError("must be between 1s and 65534s (18h12m)", field="interval", value=interval)
        self.run(self._configure_reporting(device, cluster, attribute, int(seconds)))

    async def _configure_reporting(
        self, device: str, cluster: str | None, attribute: str | None, interval: int
    ) -> None:
        zdev, hub = self._zigpy_device(device)
        served = {c.cluster_id for c in zdev.endpoints[1].in_clusters.values()}
        zcluster = hub.served_cluster(zdev, cluster or ("metering" if 0x0702 in served else "basic"))
        if attribute is None:
            attribute = "current_summ_delivered" if zcluster.cluster_id == 0x0702 else "sw_build_id"
        if attribute not in zcluster.attributes_by_name:
            known = ", ".join(sorted(zcluster.attributes_by_name))
            raise BadInputError(
                f"is not an attribute of {zcluster.ep_attribute} (it has: {known})",
                field="attribute",
                value=attribute,
            )
        await hub.bind_and_configure_reporting(zdev, zcluster, attribute, 1, interval)
        self.reporting[device] = _ReportingSetUp(
            zcluster.cluster_id, str(zcluster.ep_attribute), attribute, interval
        )
        self._event(
            "reporting-configured",
            device=device,
            cluster=zcluster.ep_attribute,
            attribute=attribute,
            interval_s=interval,
        )

    def device_should_keep_reporting(self, device: str, budget: str | float | None = None) -> None:
        """Fail unless ``device`` sends its configured report within ``budget`` (default: two intervals).

        Use after an upgrade or a power cut: a device that lost its bindings or reporting
        configuration falls silent, and the failure says what its binding table now holds.
        """
        self._require()
        set_up = self.reporting.get(device)
        if set_up is None:
            raise BadInputError(
                "has no reporting configured: call Configure Reporting first", field="device", value=device
            )
        seconds = parse_budget(budget) if budget is not None else 2.0 * set_up.interval + 30.0
        self.run(self._keep_reporting(device, set_up, seconds))

    async def _keep_reporting(self, device: str, set_up: _ReportingSetUp, budget: float) -> None:
        zdev, hub = self._zigpy_device(device)
        zcluster = hub.served_cluster(zdev, set_up.cluster_id)
        waiter = hub.report_waiter(zdev, zcluster)
        try:
            values = await asyncio.wait_for(waiter, budget)
        except TimeoutError:
            table = await hub.binding_table(zdev)
            mine = [dst for cluster, dst in table if cluster == set_up.cluster_id]
            raise DeviceFault(
                f"{device} sent no report of {set_up.cluster}.{set_up.attribute} within "
                f"{budget:g}s (configured every {set_up.interval}s); its binding table has "
                f"{len(table)} entries, {len(mine)} for {set_up.cluster}"
                + ("" if mine else ": the binding to the hub is gone")
            ) from None
        self._event(
            "report-received",
            device=device,
            cluster=set_up.cluster,
            values={str(k): str(v) for k, v in values.items()},
        )

    def _zigpy_device(self, device: str) -> tuple[zigpy.device.Device, Hub]:
        """The hub's zigpy device for testbed device ``device``; a device not on the network is a fault."""
        _, spec, hub = self._require()
        zdev = hub.device(self._ieee(spec.device(device).ieee_bytes))
        if zdev is None:
            raise DeviceFault(f"{device} is not on the network")
        return zdev, hub

    # ------------------------------------------------------------------------------ power
    def cut_power(self, device: str) -> None:
        """Cut the device's power (its flash keeps what was written)."""
        power = self._power(device)
        self._event("power-cut", device=device)
        self.power_cuts.setdefault(device, []).append(self.loop.time())
        self.run(power.cut())

    def restore_power(self, device: str) -> None:
        """Restore the device's power; it boots from flash and rejoins."""
        power = self._power(device)
        self._event("power-restore", device=device)
        self.run(power.restore())

    def power_cycle_device(self, device: str, off_time: str | float = POWER_CYCLE_OFF_S) -> None:
        """Cut power, wait ``off_time`` of testbed time, restore power, and wait for the device to rejoin."""
        seconds = parse_budget(off_time, field="off_time")
        power = self._power(device)
        self.run(self._cycle(device, power, seconds))

    async def _cycle(self, device: str, power: PowerDriver, off_time: float) -> None:
        _, spec = self._require_testbed()
        self._event("power-cut", device=device)
        self.power_cuts.setdefault(device, []).append(self.loop.time())
        await power.cut()
        await asyncio.sleep(off_time)
        # Who hears the announce: the harness's hub, or (CH under test) the CH, which reports it.
        if self.hub is not None:
            announced = self.hub.announce_waiter(self._ieee(spec.device(device).ieee_bytes))
        else:
            announced = self.loop.create_task(self._ch_hears_announce(device))
        self._event("power-restore", device=device)
        await power.restore()
        try:
            await asyncio.wait_for(announced, REBOOT_BUDGET_S)
        except TimeoutError:
            raise DeviceFault(
                f"{device} did not announce itself within {REBOOT_BUDGET_S:g}s of power-up"
            ) from None

    async def _ch_hears_announce(self, device: str) -> None:
        monitor = self.ch_monitor
        if monitor is None:
            raise BenchError("this testbed has neither a hub nor a CH under test to hear announces")
        monitor.announced.discard(device)
        while device not in monitor.announced:
            await monitor.wait_change(REBOOT_BUDGET_S)

    def _power(self, device: str) -> PowerDriver:
        testbed, spec = self._require_testbed()
        spec.device(device)
        power = testbed.power.get(device)
        if power is None:
            raise BadInputError(
                "has no power switch on this testbed (the hub's own CH cannot be switched)",
                field="device",
                value=device,
            )
        return power

    # ---------------------------------------------------------------------- flash sweep (G1)
    def flash_power_fail_sweep(
        self,
        device: str,
        image_size: str | int = "16KiB",
        random_sequences: str | int = 100,
        paths: str | list[str] | tuple[str, ...] = "upgrade,revert",
        seed: str | int | None = None,
    ) -> VerdictResult:
        """Cut power at every flash step of an install on ``device`` and check it always recovers.

        Through the device's control port (its test hooks, docs/control-port.md) the harness has a
        scratch copy of the device's flash install an ``image_size`` image, with the power cut
        before, after and in the middle of each flash step in turn, on each path of ``paths``
        (``upgrade``: a good image; ``revert``: one that fails its self-test and must be swapped
        back; ``download``: the block writes and their bookkeeping), then ``random_sequences``
        seeded sequences of 1-5 cuts. Each time it powers the device up until it settles. PASS
        when no point leaves the device bricked and each runs the image it must (new after an
        upgrade, old after a revert) with both slots holding the expected images (SHA-256) and its
        boot flags agreeing; FAIL names the first failing path, step and cut mode. The summary
        (counts and the first failing points) goes into the run's events as ``flash-sweep``.
        """
        testbed, spec, _ = self._require()
        dev = spec.device(device)
        port = testbed.ports.get(device)
        if port is None:
            raise BadInputError(
                "has no control port on this testbed (the hub's own CH cannot be swept)",
                field="device",
                value=device,
            )
        size = parse_size(image_size, field="image_size")
        count = _count(random_sequences, "random_sequences")
        chosen = parse_paths(paths)
        seed_value = self.record.seed if seed is None else _count(seed, "seed")
        old, new = sweep_images(dev.manufacturer_code, dev.image_type, dev.firmware_version, size)
        self._event("flash-sweep-start", device=device, image_size=size, paths=list(chosen), seed=seed_value)
        summary = self.run(
            run_flash_sweep(
                port,
                device,
                old_image=old,
                new_image=new,
                paths=chosen,
                random_sequences=count,
                seed=seed_value,
            )
        )
        self._event(
            "flash-sweep",
            **{k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in summary.as_json().items()},
        )
        steps = ", ".join(f"{path} {n} steps" for path, n in summary.steps.items())
        scope = f"{summary.points} points ({steps}, 3 cut modes each; {count} random sequences)"
        if not summary.passed:
            raise DeviceFault(
                f"{device}: flash power-fail sweep: {summary.failed} of {scope} failed, "
                f"{summary.bricked} bricked; first: {summary.failures[0].describe()}"
            )
        result = VerdictResult(Verdict.PASS, f"{device}: flash power-fail sweep: all {scope} recovered")
        self.note_verdict(result)
        return result

    # ------------------------------------------------------------------------------ status
    def testbed_time(self) -> float:
        """Seconds of testbed time since the session began."""
        return self.loop.time()


@dataclass(frozen=True)
class _ReportingSetUp:
    cluster_id: int
    cluster: str
    attribute: str
    interval: int


def _behaviour_names(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return [str(name).strip() for name in value]


def _count(value: str | int, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise BadInputError("must be a whole number, 0 or more", field=field, value=value)
    if number < 0:
        raise BadInputError("must be a whole number, 0 or more", field=field, value=value)
    return number


def _p2p_protocol(value: int | str | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    text = value.strip()
    if not text.isdigit():
        raise BadInputError("must be a P2P protocol version from 1 to 255", field="p2p_protocol", value=value)
    return int(text)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
