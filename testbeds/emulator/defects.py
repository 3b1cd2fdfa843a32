"""Firmware defects an emulated device can be given, so every harness check can be shown to catch one.

Each defect is modelled on a failure seen in the field (sources in ``shared/research/user-needs.md``).
A testbed file switches them on per device (``defects: [no-version-change]``); the healthy firmware
has none. A firmware image can switch them on or off too: the ``behaviours`` of its firmware
manifest replace the testbed's defects once it runs (see :mod:`testbeds.emulator.firmware`, which
also lists the defects that belong to the device and stay). The harness never reads this module: it
only sees how the device behaves on air.
"""

from __future__ import annotations

DEFECTS: dict[str, str] = {
    "no-version-change": (
        "reports a successful download and reboots, but keeps running the old image "
        "(a 'success' that did not apply: z2m #5869, #6579, #25403)"
    ),
    "rejects-valid-image": (
        "fails its own verification of every image and ends the download with INVALID_IMAGE "
        "(INVALID_IMAGE at 97-100%: zigpy-ota #25, z2m #32843)"
    ),
    "accepts-foreign-image": (
        "skips its manufacturer, image type and hardware version checks, so it installs an image made "
        "for another device (wrong image offered: zigbee-OTA #1272; wrong HW revision bricks: z2m #18840)"
    ),
    "ignores-image-notify": (
        "does not answer Image Notify and only asks on its own hourly schedule (the top complaint: "
        "'device didn't respond', z2m #6729, #28447)"
    ),
    "restarts-download-after-power-cut": (
        "throws its partial download away at every boot and starts again at offset 0: legal, but slow "
        "(esp-zigbee-sdk #833: back to offset 0 after one timeout)"
    ),
    "resumes-at-wrong-offset": (
        "after a power cut resumes 1 KiB past what it stored, so the image has a hole it never fills, "
        "and has no integrity check that would notice (offset drift and skipped blocks: zigpy-ota #25 "
        "saw 17 skips)"
    ),
    "accepts-downgrade": (
        "installs an older firmware version when offered one (downgrade only on explicit request: "
        "zigpy PR #1840, zhc PR #3662; MCUboot downgrade prevention)"
    ),
    "stops-polling-after-upgrade": (
        "a sleepy device that no longer polls its parent after an upgrade: it announces, then hears "
        "nothing (sleepy devices that never respond: z2m #6729, #22888)"
    ),
    "activates-without-waiting": (
        "activates at once although told to wait for a command (upgrade time 0xFFFFFFFF), "
        "breaking GBCS's separate Activate Firmware step"
    ),
    "loses-bindings-on-upgrade": (
        "erases its binding table and reporting configuration when a new image starts, so the meter "
        "stops sending readings to the CH after the upgrade (bindings lost after OTA: z2m #12937, "
        "ZHA re-binds after firmware updates for this reason; SmartThings 'reconfigure after OTA')"
    ),
    "stalls-at-half": (
        "stops asking for blocks half way through the download (transfers stuck at X%: z2m #8858, #17705)"
    ),
    "never-reboots": (
        "reaches its upgrade time, then hangs instead of restarting into the new image (z2m #18840)"
    ),
    "slow-block-requests": (
        "waits 30 s between block requests, legal but slow (throttled clients take hours: z2m #22463)"
    ),
    "resets-frame-counter-on-upgrade": (
        "starts its NWK outgoing frame counter again at 0 after an upgrade, so neighbours that remember "
        "a higher counter drop everything it sends (deCONZ #3387, zigpy PR #1037)"
    ),
    "drops-off-after-upgrade": (
        "after rebooting into the new image its stack never rejoins, so it falls silent "
        "(the bridge a bad ZigBee stack upgrade knocks off the network)"
    ),
    "loses-network-key-on-stack-upgrade": (
        "after rebooting into an image with a different ZigBee stack version it has forgotten the network "
        "key, so it can only come back by a Trust Centre rejoin, and stays off if the TC refuses one "
        "(stack upgrades that wipe NVM tokens: the mass-recall risk this harness exists for)"
    ),
    "never-rejoins-after-reboot": (
        "after any reboot, a power cut included, its stack neither rejoins nor announces, so it is never "
        "heard again (unlike drops-off-after-upgrade, a plain power cycle is enough)"
    ),
    "children-do-not-rejoin": (
        "a router that does not restore its child table after a reboot: its sleepy children keep polling "
        "but it no longer holds their frames, so they are cut off after the router's upgrade "
        "(orphaned end devices after a router update: z2m #4563, EmberZNet child table in RAM)"
    ),
    "bricks-on-cut-during-swap": (
        "its bootloader swaps the slots without logging how far it got, so a power cut mid-swap leaves "
        "a mixed image and no way back (MCUboot logs swap status for reset recovery, design.md; #2169)"
    ),
    "torn-boot-flags": (
        "writes its boot-state records without CRC or commit byte and reads a torn one at face value "
        "(torn magic write bricks the device: MCUboot #1966, fixed in PR #2100)"
    ),
    "no-boot-try-counter": (
        "its bootloader never counts boots of an unconfirmed image, so a new image that fails its "
        "self-test boot-loops instead of reverting (Android A/B caps tries at 7 for this reason)"
    ),
    "skips-image-verification": (
        "installs a download without checking it: a corrupted image whose firmware no longer matches "
        "its SHA-256 is installed instead of answered with INVALID_IMAGE (devices must refuse a bad "
        "image, CSA certification: Nordic DevZone 114773; MCUboot bad_secondary_slot; G3 'skips the "
        "hash or signature check')"
    ),
    "activates-before-upgrade-end-response": (
        "reboots into the new image right after its Upgrade End Request, without waiting for the "
        "server's Upgrade End Response, so a later upgrade time, 0xFFFFFFFF or ABORT cannot stop it "
        "(clients that reset early: Upgrade End lost, zigpy #1557, zsmartsystems PR #1091; G3 "
        "'activates before Upgrade End')"
    ),
    "p2p-protocol-skew": (
        "a bridge whose new P2P protocol (version 2 or later) cannot talk to an old-protocol peer: it "
        "writes and accepts only its own version, so upgrading one bridge of a pair first cuts off the "
        "meter behind them (version skew between near and far bridge, the Alt HAN recall scenario; "
        "devices that drop off after a stack change: user-needs mode 6)"
    ),
    "skips-signature-check": (
        "installs an image whatever its signature: neither the firmware nor the bootloader verifies "
        "it against the trusted key, so an image signed by another key, or not signed at all, runs "
        "(secure boot not enforced: bootloaders that accept unsigned images, MCUboot "
        "bad_secondary_slot/sig tests; Zephyr with_mcumgr 'unsigned or wrong-key image not swapped'; "
        "G3 'skips the hash or signature check')"
    ),
    "confirms-before-self-test": (
        "marks a new image good as soon as it starts, before its self-test, so a bad image is never "
        "reverted (MCUboot docs: confirm only after the application has checked itself)"
    ),
    "ch-ignores-image-hash": (
        "a Communications Hub that orders activation whatever image hash Activate Firmware names, "
        "so a command meant for another image (or a tampered one) activates the image the device "
        "holds (GBCS CS06 requires the hash check: 'hash mismatch' response; firmware that skips "
        "the hash or signature check, G3)"
    ),
}

SLOW_BLOCK_DELAY_S = 30.0


def unknown_defects(names: list[str] | tuple[str, ...] | frozenset[str]) -> list[str]:
    """The names in ``names`` that are not defects this emulator knows."""
    return sorted(set(names) - DEFECTS.keys())
