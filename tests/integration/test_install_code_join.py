"""zigpy on the emulated coordinator radio: install-code joining admits the device and zigpy learns of it."""

from __future__ import annotations

import asyncio

import looptime
import zigpy.state
import zigpy.types as t
import zigpy.util
import zigpy.zdo.types as zdo_t

from harness.radio.virtual import VirtualControllerApplication
from testbeds.emulator.device import DeviceConfig
from testbeds.emulator.premises import LinkConfig, Premises

KEY = bytes.fromhex("01030507090b0d0f00020406080a0c0d")
CODE = bytes.fromhex("83FED3407A939723A5C639B26916D505C3B5")
PAN = 0x1A62


def _config(name: str, nwk: int, role: str, **extra: object) -> DeviceConfig:
    return DeviceConfig(
        name=name,
        type="IHD",
        ieee=bytes([nwk & 0xFF, nwk >> 8, 0, 0xFE, 0xFF, 0x6F, 0x0D, 0x00]),
        nwk=nwk,
        pan_id=PAN,
        role=role,
        manufacturer_code=0x1237,
        manufacturer_name="test",
        model=name,
        image_type=0x0400,
        hardware_version=1,
        firmware_version=0x01000000,
        stack_version=2,
        power_source="mains",
        network_key=KEY,
        **extra,  # type: ignore[arg-type]
    )


def test_permit_with_link_key_admits_the_device_and_zigpy_learns_of_it() -> None:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    coordinator = _config("CH", 0x0000, "coordinator")
    joiner = _config("IHD", 0x5B10, "end_device", parent="CH", commissioned=False, install_code=CODE)
    premises = Premises(
        loop=loop, devices=[coordinator, joiner], links=[LinkConfig("CH", "IHD")], seed=5, network_key=KEY
    )
    premises.emulate("IHD")
    network = zigpy.state.NetworkInfo(pan_id=t.PanId(PAN), channel=t.uint8_t(15), security_level=t.uint8_t(5))
    node = zigpy.state.NodeInfo(
        nwk=t.NWK(0), ieee=t.EUI64(coordinator.ieee), logical_type=zdo_t.LogicalType.Coordinator
    )
    app = VirtualControllerApplication(
        VirtualControllerApplication.build_config(),
        attach=lambda on_data, log: premises.attach_coordinator("CH", on_data, log),
        network=network,
        node=node,
    )
    ieee = t.EUI64(joiner.ieee)

    async def scenario() -> None:
        await app.startup(auto_form=False)
        premises.power_on("IHD")
        await asyncio.sleep(20.0)
        assert ieee not in app.devices, "not permitted yet: the Trust Centre sends it no key"
        key = zigpy.util.convert_install_code(CODE)
        assert key is not None
        await app.permit_with_link_key(ieee, key, 60)
        await asyncio.sleep(60.0)
        assert ieee in app.devices, "the admitted device announced itself and zigpy added it"
        assert app.devices[ieee].nwk == 0x5B10
        await app.shutdown(db=False)

    try:
        loop.run_until_complete(scenario())
    finally:
        premises.shutdown()
        loop.close()
    assert premises.devices["IHD"].network_state.network_key == KEY
