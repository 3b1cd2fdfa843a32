"""Robot Framework keyword library for OTA firmware-update testing of GB smart-metering HAN devices."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from robot.api import logger
from robot.api.deco import keyword, library
from robot.api.exceptions import Error, Failure, FatalError
from robot.libraries.BuiltIn import BuiltIn, RobotNotRunningError

from harness import __version__
from harness.errors import BadInputError, HarnessError
from harness.scenarios.progress import NoProgress, ProgressSink, RichProgress
from harness.scenarios.session import OtaSession
from harness.scenarios.values import format_version
from harness.scenarios.verdicts import Verdict

F = TypeVar("F", bound=Callable[..., Any])


def default_testbed() -> str:
    """The default testbed file: $HARNESS_TESTBED, else the packaged ``testbeds/emulated.yaml``."""
    return os.environ.get("HARNESS_TESTBED") or str(resources.files("testbeds") / "emulated.yaml")


def _classified(func: F) -> F:
    """Turn harness errors into Robot statuses and note the verdict each leads to."""

    @functools.wraps(func)
    def wrapper(self: OtaLibrary, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(self, *args, **kwargs)
        except HarnessError as exc:
            verdict = self._session().note_exception(exc)
            message = str(exc)
            if isinstance(exc, BadInputError) and func.__name__ == "start_testbed":
                raise FatalError(f"bad testbed: {message}") from None
            if verdict is Verdict.FAIL:
                raise Failure(message) from None
            raise Error(f"{verdict}: {message}") from None

    return wrapper  # type: ignore[return-value]


@library(scope="GLOBAL", version=__version__, doc_format="ROBOT")
class OtaLibrary:
    """Drives over-the-air firmware updates of GB smart-metering HAN devices and P2P Alt HAN bridges.

    The library plays the Communications Hub (a zigpy coordinator) on a testbed described by a
    testbed file, serves OTA images to the devices over ZigBee, cuts and restores their power, reads
    their firmware version back over ZigBee, and records evidence of everything: a Wireshark-readable
    capture of every frame on air, a timeline, device logs and the images served.

    == Table of contents ==

    %TOC%

    = Testbeds =

    A testbed file (YAML) names the devices (CH, ESME, GSME, IHD, PPMID, HCALCS, bridges B1-B4),
    their addresses, firmware identity and power source, and the radio and P2P links between them.
    `Start Testbed` without an argument uses ``$HARNESS_TESTBED`` or the packaged
    ``testbeds/emulated.yaml``: a premises where the gas meter is out of range of the CH and is
    reached through the near-end bridge B1 and the far-end bridge B2. See ``docs/testbed.md``.

    = CH under test =

    On a testbed whose ``radio`` has ``type: none`` (``testbeds/emulated-ch.yaml``) the CH is itself
    a device under test and the harness has no hub: `CH Update Firmware`, `Wait For CH Alert`,
    `CH Activate Firmware` and `CH Read Firmware Version` drive it over its control port with
    GBCS-style commands (Update Firmware, Activate Firmware, Read Firmware Version) and judge its
    alerts (0x8F72 verification successful, 0x8F1C verification failed, 0x8F1B transfer failed,
    0x8F43 firmware version changed). Keywords that need the harness's own hub stop with a bad
    input error there, and the CH keywords do on a testbed with a radio.

    = Devices =

    Keywords take device names as the testbed file spells them (``B2``, ``GSME``). An unknown name
    fails with the list of names the testbed has.

    = Budgets and time =

    On an emulated testbed time is virtual: a transfer that takes an hour on air finishes in seconds,
    and the same seed gives the same timeline. Budgets are testbed time: ``90s``, ``15min``, ``2h``.

    = Versions and sizes =

    Firmware versions are 32-bit OTA file versions: ``0x01020000``, ``16908288`` or ``1.2.0.0``.
    Sizes are bytes: ``204800``, ``200KiB``.

    = Verdicts =

    Every check ends as PASS, FAIL (the device did wrong), ERROR (the harness or the bench broke,
    or the input was unusable) or INCONCLUSIVE (the evidence cannot decide, e.g. the budget ran out
    while the device was still progressing). A FAIL fails the test with the device's misdeed as the
    message; an ERROR or INCONCLUSIVE fails it with the verdict first. ``harness run`` exits 0 when
    all tests PASS, 1 on any FAIL, 2 on any ERROR/INCONCLUSIVE, 3 on bad input.

    = Evidence =

    Evidence goes to ``$HARNESS_RUN_DIR`` (set by ``harness run``) or Robot's output directory:
    ``evidence/air.pcap``, ``evidence/images/``, ``evidence/serial/``, ``timeline.parquet`` and
    ``run.json``; ``harness run`` adds ``index.html`` and ``manifest.json``.

    = Example =

    | *** Settings ***
    | Library         harness.robot.OtaLibrary
    | Suite Setup     Start Testbed
    | Suite Teardown  Stop Testbed
    |
    | *** Test Cases ***
    | Far-end bridge takes a new image through the near-end bridge
    |     ${image}=    Build Firmware Image    B2    1.1.0.0    size=200KiB
    |     Offer Firmware Image    B2    ${image}
    |     Wait Until Upgrade Completes    B2    budget=2h
    |     Firmware Version Should Be    B2    1.1.0.0
    """

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self) -> None:
        self._ota: OtaSession | None = None
        # The library listens to its own suite: it opens and closes the verdict of each test.
        self.ROBOT_LIBRARY_LISTENER = self

    # ---------------------------------------------------------------------------- session
    def _session(self) -> OtaSession:
        if self._ota is None:
            self._ota = OtaSession(
                self._run_dir(),
                seed=_env_int("HARNESS_SEED"),
                progress=self._progress(),
                command=os.environ.get("HARNESS_COMMAND", "robot"),
            )
        return self._ota

    @staticmethod
    def _run_dir() -> Path:
        configured = os.environ.get("HARNESS_RUN_DIR")
        if configured:
            return Path(configured)
        try:
            return Path(BuiltIn().get_variable_value("${OUTPUT DIR}"))
        except RobotNotRunningError:
            return Path.cwd()

    @staticmethod
    def _progress() -> ProgressSink:
        return RichProgress() if os.environ.get("HARNESS_PROGRESS") == "1" else NoProgress()

    # --------------------------------------------------------------------------- listener
    def start_test(self, data: Any, result: Any) -> None:
        self._session().begin_test(result.name, result.parent.longname if result.parent else "")

    def end_test(self, data: Any, result: Any) -> None:
        verdict = self._session().end_test(result.passed, result.message)
        logger.info(f"verdict: {verdict}")

    def close(self) -> None:
        if self._ota is not None:
            self._ota.close()

    # ---------------------------------------------------------------------------- testbed
    @keyword
    @_classified
    def start_testbed(self, file: str | None = None) -> None:
        """Starts the testbed described by ``file`` and waits until every device has joined.

        Without ``file``, uses ``$HARNESS_TESTBED`` or the packaged default testbed
        (``testbeds/emulated.yaml``). A bad testbed file stops the whole run with a message that
        names the file, line, field and value. A running testbed is stopped first.

        | `Start Testbed` |
        | `Start Testbed` | testbeds/ihd-out-of-range.yaml |
        """
        self._session().start_testbed(file or default_testbed())

    @keyword
    @_classified
    def stop_testbed(self) -> None:
        """Stops the running testbed: ends transfers, powers devices off, stops the hub.

        Use it as suite teardown. Evidence recorded so far stays in the run folder.

        | `Stop Testbed` |
        """
        self._session().stop_testbed()

    # ----------------------------------------------------------------------------- images
    @keyword
    @_classified
    def build_firmware_image(
        self,
        device: str,
        version: str,
        size: str = "200KiB",
        stack_version: int | None = None,
        form: str = "zigbee",
        p2p_protocol: int | None = None,
        behaviours: str | None = None,
        sign_key: str | None = None,
    ) -> str:
        """Builds an OTA image for ``device`` and returns the path of the file.

        The image carries the device's manufacturer code and image type from the testbed file,
        file version ``version``, ZigBee stack version ``stack_version`` (default: the device's
        current one) and is ``size`` bytes in total. ``form`` is ``zigbee`` (OTA header and tagged
        sub-elements) or ``gbcs`` (OTA header and an opaque manufacturer body, as GB images are).
        The file is kept under ``evidence/images/`` of the run.

        The firmware in the image starts with a manifest (docs/firmware-manifest.md) that an
        emulated device acts on once it runs the image: the stack version, the P2P link protocol
        version ``p2p_protocol`` of a bridge's firmware (default: the bridge keeps its own) and
        ``behaviours``, the emulated defects the new firmware has (comma-separated names from
        docs/testbed.md; default: none, a healthy firmware).

        With ``sign_key``, a PEM file holding an ECDSA P-256 private key, the image ends in a
        signature sub-element (docs/signing.md; zigbee form only) that devices trusting the
        matching public key (testbed field ``signing_key``) check; ``size`` counts it.

        | ${image}= | `Build Firmware Image` | B2 | 1.1.0.0 |
        | ${image}= | `Build Firmware Image` | GSME | 0x01010000 | size=64KiB | form=gbcs |
        | ${image}= | `Build Firmware Image` | B1 | 1.1.0.0 | stack_version=3 |
        | ${image}= | `Build Firmware Image` | B1 | 1.1.0.0 | p2p_protocol=2 | behaviours=p2p-protocol-skew |
        | ${image}= | `Build Firmware Image` | B2 | 1.1.0.0 | sign_key=keys/vendor.key.pem |
        """
        return str(
            self._session().build_firmware_image(
                device, version, size, stack_version, form, p2p_protocol, behaviours, sign_key
            )
        )

    @keyword
    @_classified
    def load_firmware_image(self, path: str) -> str:
        """Reads and checks an OTA file from disk and returns the path to offer.

        A bad file (wrong magic, short header, truncated, size mismatch) fails with the exact
        defect and byte offset; trailing bytes after the declared size are logged as a warning.

        | ${image}= | `Load Firmware Image` | vendor/bridge-2.1.ota |
        """
        return str(self._session().load_firmware_image(path))

    # -------------------------------------------------------------------------------- OTA
    @keyword
    @_classified
    def offer_firmware_image(self, device: str, image: str, activation: str = "now") -> None:
        """Offers ``image`` to ``device``: sends Image Notify and serves the blocks it asks for.

        The transfer runs in the background while other keywords run; use
        `Wait Until Upgrade Completes` to wait for its end and get the verdict.

        ``activation`` is the upgrade time the device is given once it has the image: ``now``,
        a delay such as ``10min``, or ``on-command`` (0xFFFFFFFF: keep running the old image
        until `Activate Firmware`, GBCS's two-stage update).

        | `Offer Firmware Image` | B2 | ${image} |
        | `Offer Firmware Image` | GSME | ${image} | activation=on-command |
        """
        self._session().offer_firmware_image(device, image, activation)

    @keyword
    @_classified
    def activate_firmware(self, device: str, budget: str = "10min") -> None:
        """Tells ``device`` to activate the image it holds, and fails unless it then runs it.

        For images offered with ``activation=on-command``, after `Wait Until Upgrade Completes`
        (GBCS Activate Firmware): an Upgrade End Response with upgrade time now, then the device
        must reboot, announce itself and report the offered version within ``budget``.

        | `Offer Firmware Image` | B2 | ${image} | activation=on-command |
        | `Wait Until Upgrade Completes` | B2 |
        | `Firmware Version Should Be` | B2 | 1.0.0.0 |
        | `Activate Firmware` | B2 |
        | `Firmware Version Should Be` | B2 | 1.1.0.0 |
        """
        self._session().activate_firmware(device, budget)

    @keyword
    @_classified
    def wait_until_upgrade_completes(self, device: str, budget: str = "2h", expect: str = "PASS") -> str:
        """Waits up to ``budget`` (testbed time) until ``device`` runs the offered image; returns the verdict.


        PASS when the device downloaded and verified the image, activated it, rebooted and reports
        the new version over ZigBee; for ``activation=on-command``, when it verified the image and
        still runs the old version a minute later. FAIL when it refused the image, reported an error, stopped
        asking for blocks, or still runs the old version. INCONCLUSIVE when the budget ran out
        while it was still progressing. The keyword fails unless the verdict is ``expect``
        (``PASS`` by default; a negative test may expect ``FAIL``).

        | ${verdict}= | `Wait Until Upgrade Completes` | B2 | budget=2h |
        | `Wait Until Upgrade Completes` | GSME | budget=6h | expect=FAIL |
        """
        wanted = expect.strip().upper()
        if wanted not in Verdict.__members__:
            raise Error(f"expect must be one of PASS, FAIL, ERROR, INCONCLUSIVE (got {expect!r})")
        result = self._session().wait_until_upgrade_completes(device, budget)
        logger.info(str(result))
        if result.verdict.value != wanted:
            if result.verdict is Verdict.FAIL:
                raise Failure(f"{device}: {result.reason}")
            raise Error(f"{result.verdict}: {device}: {result.reason}")
        return result.verdict.value

    @keyword
    @_classified
    def device_should_refuse_image(self, device: str, image: str, budget: str = "30min") -> str:
        """Offers ``image`` to ``device`` whatever the device says it is, and fails if it installs it.

        A negative test: for an image with another manufacturer code, image type or hardware
        version range, the device itself must refuse it (not download it, or end the download with
        an error) and keep its version. Fails when the device accepts it; the verdict is
        INCONCLUSIVE when the device never asked for the image within ``budget``.

        | ${foreign}= | `Build Firmware Image` | ESME | 1.1.0.0 | size=16KiB |
        | `Device Should Refuse Image` | B2 | ${foreign} |
        """
        result = self._session().device_should_refuse_image(device, image, budget)
        logger.info(str(result))
        if result.verdict is Verdict.FAIL:
            raise Failure(f"{device}: {result.reason}")
        if result.verdict is not Verdict.PASS:
            raise Error(f"{result.verdict}: {device}: {result.reason}")
        return result.verdict.value

    @keyword
    @_classified
    def wait_until_transfer_reaches(self, device: str, point: str, budget: str = "2h") -> int:
        """Waits until ``device`` has been served ``point`` of its image; returns the offset reached.

        ``point`` is a share of the image (``50%``) or a size (``64KiB``, ``65536``). Use it to act
        at a chosen point of a download, e.g. to cut power there. Fails if the transfer ends first
        or ``budget`` of testbed time runs out.

        | `Wait Until Transfer Reaches` | B2 | 50% |
        | `Cut Power` | B2 |
        """
        return self._session().wait_until_transfer_reaches(device, point, budget)

    @keyword
    @_classified
    def transfer_should_have_resumed(self, device: str) -> None:
        """Fails unless, after the last power cut during its transfer, ``device`` resumed where it stopped.

        Judged from what the hub served: the first block asked for after the cut must start no
        later than the end of the data already sent (else the image has a hole) and no more than
        1 KiB plus one block before it (else the device threw its download away and started over,
        which is legal but slow). Use it after `Wait Until Upgrade Completes`.

        | `Wait Until Transfer Reaches` | B2 | 50% |
        | `Power Cycle Device` | B2 |
        | `Wait Until Upgrade Completes` | B2 |
        | `Transfer Should Have Resumed` | B2 |
        """
        self._session().transfer_should_have_resumed(device)

    @keyword
    @_classified
    def wait_testbed_time(self, duration: str) -> None:
        """Lets ``duration`` of testbed time pass while transfers and devices carry on.

        On an emulated testbed this is virtual time: ``1h`` passes in moments.

        | `Wait Testbed Time` | 90s |
        """
        self._session().wait_testbed_time(duration)

    @keyword
    @_classified
    def firmware_version_should_be(self, device: str, version: str) -> None:
        """Reads the firmware version of ``device`` over ZigBee and fails unless it is ``version``.

        The read is a ZCL Read Attributes of the OTA cluster's CurrentFileVersion, through every
        hop between the hub and the device.

        | `Firmware Version Should Be` | B2 | 1.1.0.0 |
        """
        self._session().firmware_version_should_be(device, version)

    @keyword
    @_classified
    def read_firmware_version(self, device: str) -> str:
        """Reads the firmware version of ``device`` over ZigBee and returns it as ``0x01020000``.

        | ${version}= | `Read Firmware Version` | GSME |
        """
        version = self._session().read_firmware_version(device)
        logger.info(f"{device} runs {format_version(version)}")
        return f"0x{version:08X}"

    @keyword
    @_classified
    def device_should_be_reachable(self, device: str) -> None:
        """Fails unless ``device`` answers a ZCL read (Basic cluster model) through every hop.

        | `Device Should Be Reachable` | GSME |
        """
        self._session().device_should_be_reachable(device)

    @keyword
    @_classified
    def permit_joining_with_install_code(self, device: str, duration: str = "3min") -> None:
        """Opens the network to ``device`` alone, for ``duration`` (at most 254 s as ZigBee allows).

        The hub's Trust Centre derives the device's link key from the ``install_code`` in the
        testbed file and sends the network key only to it, encrypted under that key. Other devices
        that try to join meanwhile get nothing. Follow with `Wait Until Joined`.

        | `Permit Joining With Install Code` | IHD | 2min |
        | `Wait Until Joined` | IHD |
        """
        self._session().permit_joining_with_install_code(device, duration)

    @keyword
    @_classified
    def wait_until_joined(self, device: str, budget: str = "5min") -> None:
        """Waits (testbed time) until ``device`` has joined the network and answered the interview.

        Fails if it has not within ``budget``, e.g. a device whose install code does not match the
        one on file, or one that was never permitted.

        | `Wait Until Joined` | IHD | budget=3min |
        """
        self._session().wait_until_joined(device, budget)

    @keyword
    @_classified
    def download_power_fail_sweep(
        self,
        device: str,
        image_size: str = "16KiB",
        every: str = "2KiB",
        off_time: str = "5s",
        budget: str = "2h",
    ) -> None:
        """Cuts ``device``'s power at every ``every`` bytes of a download, one fresh upgrade per cut point.

        For each point the harness builds a newer image (the third version byte counts the
        points), offers it, cuts the power once that much was served, restores it after
        ``off_time`` and waits for the upgrade (``budget`` each, testbed time). Every point must
        resume where the device stopped, with no hole and at most 1 KiB and a block fetched again,
        and end on the new version. Fails naming the first failing offset; the counts go to the
        run's harness events. A 16 KiB image cut every 2 KiB is 7 upgrades, a few seconds.

        The download at each point is handled by the firmware running then: the device's own
        firmware at the first point, then the image each point installed (built healthy by the
        harness). So a resume defect of the factory firmware shows at the first point.

        | `Download Power Fail Sweep` | B2 |
        | `Download Power Fail Sweep` | GSME | image_size=8KiB | every=1KiB |
        """
        self._session().download_power_fail_sweep(device, image_size, every, off_time, budget)

    @keyword
    @_classified
    def configure_reporting(
        self, device: str, cluster: str | None = None, attribute: str | None = None, interval: str = "60s"
    ) -> None:
        """Binds ``device``'s ``cluster`` to the hub and asks it to report ``attribute`` every ``interval``.

        Defaults: on a meter, the Metering cluster's ``current_summ_delivered``; on other devices
        the Basic cluster's ``sw_build_id``. ``cluster`` is a zigpy cluster name (``metering``,
        ``basic``) or id; ``attribute`` a zigpy attribute name. ``interval`` is the maximum
        reporting interval, 1s to 18h12m. Fails if the device refuses the binding or the
        configuration. A healthy device keeps both in flash, through power cuts and upgrades.

        | `Configure Reporting` | ESME | interval=2min |
        | `Configure Reporting` | B1 | basic | sw_build_id | 10min |
        """
        self._session().configure_reporting(device, cluster, attribute, interval)

    @keyword
    @_classified
    def device_should_keep_reporting(self, device: str, budget: str | None = None) -> None:
        """Fails unless ``device`` sends the report set up by `Configure Reporting` within ``budget``.

        The budget is testbed time and defaults to two reporting intervals plus 30 s. Use it after
        an upgrade or a power cut: a device that lost its bindings or reporting configuration falls
        silent, and the failure says what its binding table (read with ZDO Mgmt_Bind_req) now holds.

        | `Configure Reporting` | ESME |
        | `Offer Firmware Image` | ESME | ${image} |
        | `Wait Until Upgrade Completes` | ESME |
        | `Device Should Keep Reporting` | ESME |
        """
        self._session().device_should_keep_reporting(device, budget)

    # ------------------------------------------------------------------------- CH under test
    @keyword
    @_classified
    def ch_update_firmware(self, device: str, image: str) -> None:
        """Tells the CH under test to update ``device`` with ``image`` (GBCS Update Firmware, SR 11.1).

        Only on a testbed whose CH is a device under test (``radio: {type: none}``, e.g.
        ``testbeds/emulated-ch.yaml``): the CH stages the image, notifies the device and serves
        the download; the device verifies the image and keeps its old firmware until
        `CH Activate Firmware`. Wait for the CH's Firmware Transfer Alert with `Wait For CH Alert`.
        The image must carry the device's manufacturer code and image type.

        | ${image}= | `Build Firmware Image` | B2 | 1.4.0.0 | size=64KiB | form=gbcs |
        | `CH Update Firmware` | B2 | ${image} |
        | `Wait For CH Alert` | 0x8F72 | B2 |
        """
        self._session().ch_update_firmware(device, image)

    @keyword
    @_classified
    def wait_for_ch_alert(self, code: str, device: str | None = None, budget: str = "2h") -> dict[str, Any]:
        """Waits until the CH under test raises alert ``code`` about ``device``; returns the alert.

        Alerts: ``0x8F72`` firmware verification successful, ``0x8F1C`` firmware verification
        failed, ``0x8F1B`` firmware transfer failed (each with the CCS08 outcome: 0 success,
        1 image discarded, 2 hardware mismatch, 3 transfer failure), ``0x8F43`` firmware version
        changed. The CH's alerts are taken in the order it raised them, each once: the keyword
        fails when the next alert about ``device`` is another one (e.g. 0x8F1C when 0x8F72 was
        expected), or when ``budget`` (testbed time) runs out and no transfer is progressing; the
        verdict is INCONCLUSIVE when it runs out while the device is still downloading. Returns the
        alert's fields (``code``, ``device``, ``t``, ``outcome``, ...) as a dictionary.

        | `Wait For CH Alert` | 0x8F72 | B2 | budget=2h |
        | ${alert}= | `Wait For CH Alert` | 0x8F43 | B2 |
        | `Should Be Equal` | ${alert}[to_text] | 1.4.0.0 |
        """
        return self._session().wait_for_ch_alert(code, device, budget)

    @keyword
    @_classified
    def ch_activate_firmware(
        self, device: str, image: str | None = None, delay: str | None = None, expect: str = "0"
    ) -> int:
        """Tells the CH under test to activate the image ``device`` holds (GBCS Activate Firmware, SR 11.3).

        The command names the image by its manufacturer image hash, here the SHA-256 of the whole
        OTA file (default: the image last sent with `CH Update Firmware`), and, with ``delay``,
        when to activate (``10min`` from now; default: now). Fails when the device changed its
        firmware version (alert 0x8F43) within a minute of verifying the image, before being told
        to, and when the CH's response is not ``expect``: ``0`` success, ``1`` no image held,
        ``2`` hash mismatch, ``3`` activation failure. Returns the response code.

        | `CH Activate Firmware` | B2 |
        | `Wait For CH Alert` | 0x8F43 | B2 |
        | `CH Activate Firmware` | B2 | ${other_image} | expect=hash mismatch |
        """
        return self._session().ch_activate_firmware(device, image, delay, expect)

    @keyword
    @_classified
    def ch_read_firmware_version(self, device: str) -> str:
        """Asks the CH under test for ``device``'s firmware version (GBCS Read Firmware Version, SR 11.2).

        The CH reads the device over the air; for the sleepy gas meter its Gas Proxy Function answers
        from its cache (the version the GSME last reported, or was read, at its last wake). Returns
        the version as ``0x01040000``; fails if the device does not answer the CH.

        | ${version}= | `CH Read Firmware Version` | B2 |
        | `Should Be Equal` | ${version} | 0x01040000 |
        """
        version = self._session().ch_read_firmware_version(device)
        logger.info(f"the CH says {device} runs {format_version(version)}")
        return f"0x{version:08X}"

    # ------------------------------------------------------------------------------ power
    @keyword
    @_classified
    def cut_power(self, device: str) -> None:
        """Cuts the power of ``device``. Its flash keeps what was written; everything else is lost.

        | `Cut Power` | B2 |
        """
        self._session().cut_power(device)

    @keyword
    @_classified
    def restore_power(self, device: str) -> None:
        """Restores the power of ``device``; it boots from flash and announces itself again.

        | `Restore Power` | B2 |
        """
        self._session().restore_power(device)

    @keyword
    @_classified
    def power_cycle_device(self, device: str, off_time: str = "5s") -> None:
        """Cuts the power of ``device``, waits ``off_time`` (testbed time), restores it, awaits the rejoin.

        Fails unless the device announces itself (ZDO Device_annce) within 5 min of power-up: heard
        by the harness's hub, or on a testbed whose CH is under test, reported by that CH.

        | `Power Cycle Device` | B1 |
        | `Power Cycle Device` | B1 | off_time=1min |
        """
        self._session().power_cycle_device(device, off_time)

    # ------------------------------------------------------------------------ flash sweep
    @keyword
    @_classified
    def flash_power_fail_sweep(
        self,
        device: str,
        image_size: str = "16KiB",
        random_sequences: str = "100",
        paths: str = "upgrade,revert",
        seed: str | None = None,
    ) -> str:
        """Cuts power at every flash step of an install on ``device`` and checks it always recovers.

        Through the device's control port, a scratch copy of the device's flash (never the flash
        the device runs from) installs an ``image_size`` image while the power is cut before, after
        and in the middle of each flash step in turn, on each of ``paths``: ``upgrade`` (a good
        image), ``revert`` (an image that fails its self-test, which the bootloader must swap back)
        and ``download`` (the block writes and the record of how far the download got). Then come
        ``random_sequences`` seeded sequences of one to five cuts, each landing while the device
        recovers from the one before (``seed``: default the run's seed). After every cut the device
        is powered up until it settles.

        Passes when no point leaves the device bricked and every point ends running the image it
        must (the new one after an upgrade or a download, the old one after a revert), with both
        slots holding the expected images (SHA-256, computed by the harness from the images it
        built) and the boot flags agreeing. Fails naming the first failing path, step and cut mode.
        The counts and the first failing points are recorded in the run's events (``flash-sweep``).
        Returns the verdict's reason.

        | `Flash Power Fail Sweep` | B1 |
        | `Flash Power Fail Sweep` | B2 | image_size=64KiB | random_sequences=1000 |
        | `Flash Power Fail Sweep` | GSME | paths=upgrade,revert,download |
        """
        return (
            self._session().flash_power_fail_sweep(device, image_size, random_sequences, paths, seed).reason
        )


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None
