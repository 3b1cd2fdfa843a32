"""A zigpy ControllerApplication whose radio is the coordinator radio of an emulated premises.

This is one of the two places in ``harness`` that know the emulator exists (the other is the testbed
starter). It plays the part that bellows or zigpy-znp play for a real stick: it turns zigpy's
``send_packet`` into an APS data request on the coordinator's stack, and what that stack receives into
``packet_received``. Everything above it (the hub, the OTA server, scenarios) is the same zigpy code
that drives a coordinator stick on a lab bench. Install-code joining goes through the emulated Trust
Centre (``permit_with_link_key``), as bellows puts a key in the stick's transient key table; a device it
admits announces itself, which zigpy's Device_annce handling turns into a join.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zigpy.application
import zigpy.config as zconf
import zigpy.endpoint
import zigpy.exceptions
import zigpy.state
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.profiles import zha

from testbeds.emulator.node import ApsIndication
from testbeds.emulator.premises import CoordinatorRadio

LOGGER = logging.getLogger(__name__)

AttachRadio = Callable[[Callable[[ApsIndication], None], Callable[[str], None]], CoordinatorRadio]
"""Switches on the emulated coordinator radio: (on_data, log) -> radio."""


class VirtualControllerApplication(zigpy.application.ControllerApplication):
    """zigpy's controller on the emulated coordinator radio (no serial port, same loop)."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        attach: AttachRadio,
        network: zigpy.state.NetworkInfo,
        node: zigpy.state.NodeInfo,
    ) -> None:
        super().__init__(config)
        self._attach = attach
        self._network = network
        self._node = node
        self._radio: CoordinatorRadio | None = None

    @classmethod
    def build_config(cls) -> dict[str, Any]:
        """zigpy configuration for a harness hub: no database, no backups, no remote OTA providers."""
        return {
            zconf.CONF_DEVICE: {zconf.CONF_DEVICE_PATH: "virtual://coordinator"},
            zconf.CONF_DATABASE: None,
            zconf.CONF_NWK_BACKUP_ENABLED: False,
            zconf.CONF_TOPO_SCAN_ENABLED: False,
            zconf.CONF_WATCHDOG_ENABLED: False,
            zconf.CONF_STARTUP_ENERGY_SCAN: False,
            zconf.CONF_OTA: {zconf.CONF_OTA_ENABLED: False},
        }

    async def connect(self) -> None:
        """Switch the emulated coordinator radio on."""
        if self._radio is None:
            self._radio = self._attach(self._on_aps_data, lambda line: LOGGER.debug("coordinator: %s", line))
            self._radio.on_device_left(self._on_device_left)
            self._radio.on_join(self._on_trust_centre_join)

    def _on_trust_centre_join(self, nwk: int, ieee: bytes, how: str, admitted: bool) -> None:
        # What an NCP's trust-centre join handler reports (EZSP trustCenterJoinHandler, ZNP
        # ZDO_TC_DEV_IND): listeners such as the hub learn how each device (re)joined.
        self.listener_event("trust_centre_join", t.EUI64(ieee), t.NWK(nwk), how, admitted)

    def _on_device_left(self, nwk: int, ieee: bytes) -> None:
        self.handle_leave(t.NWK(nwk), t.EUI64(ieee))

    async def disconnect(self) -> None:
        """Switch the emulated coordinator radio off."""
        if self._radio is not None:
            self._radio.stop()
            self._radio = None

    async def start_network(self) -> None:
        """Register the coordinator itself as a zigpy device (as radio libraries do) and its endpoints."""
        await self.register_endpoints()
        coordinator = self.add_device(ieee=self._node.ieee, nwk=self._node.nwk)
        coordinator.node_desc = zdo_t.NodeDescriptor(
            logical_type=zdo_t.LogicalType.Coordinator,
            mac_capability_flags=0x8E,
            manufacturer_code=0x0000,
            maximum_buffer_size=82,
            maximum_incoming_transfer_size=82,
            server_mask=0x0041,
            maximum_outgoing_transfer_size=82,
            descriptor_capability_field=0,
        )
        endpoint = coordinator.add_endpoint(1)
        endpoint.status = zigpy.endpoint.Status.ZDO_INIT
        endpoint.profile_id = 0x0104
        endpoint.device_type = zha.DeviceType.CONFIGURATION_TOOL
        endpoint.add_input_cluster(0x0000)
        endpoint.add_output_cluster(0x0019)
        self.device_initialized(coordinator)

    async def load_network_info(self, *, load_devices: bool = False) -> None:
        """Report the network the testbed file describes (formed by the testbed starter)."""
        self.state.network_info = self._network
        self.state.node_info = self._node

    async def write_network_info(
        self, *, network_info: zigpy.state.NetworkInfo, node_info: zigpy.state.NodeInfo
    ) -> None:
        """Take new network settings (zigpy's form_network); the emulated air follows the testbed."""
        self._network = network_info
        self._node = node_info

    async def reset_network_info(self) -> None:
        """Forget the network settings."""
        self._network = zigpy.state.NetworkInfo()

    async def force_remove(self, dev: zigpy.device.Device) -> None:
        """Nothing to do: the emulated coordinator keeps no child table for zigpy to clean."""

    async def add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        """Endpoints exist implicitly on the emulated coordinator."""

    async def permit_ncp(self, time_s: int = 60) -> None:
        """Open the coordinator's own association permit (zigpy broadcasts the routers' request itself)."""
        if self._radio is None:
            raise zigpy.exceptions.DeliveryError("the emulated coordinator radio is off")
        self._radio.permit(int(time_s), broadcast=False)

    async def permit_with_link_key(self, node: t.EUI64, link_key: t.KeyData, time_s: int = 60) -> None:
        """Let one device join with its link key (from its install code) for ``time_s`` seconds.

        The emulated Trust Centre admits only that device, and every router is told to permit joining.
        """
        if self._radio is None:
            raise zigpy.exceptions.DeliveryError("the emulated coordinator radio is off")
        self._radio.permit_with_link_key(bytes(node.serialize()), bytes(link_key.serialize()), int(time_s))

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        """Send one zigpy packet through the emulated coordinator; raise DeliveryError if it fails."""
        if self._radio is None:
            raise zigpy.exceptions.DeliveryError("the emulated coordinator radio is off")
        target = packet.dst
        if target is None:
            raise zigpy.exceptions.DeliveryError("packet has no destination")
        if target.addr_mode in (t.AddrMode.NWK, t.AddrMode.Broadcast):
            dst = int(target.address)  # type: ignore[arg-type]
        elif target.addr_mode == t.AddrMode.IEEE:
            dst = int(self.get_device(ieee=target.address).nwk)  # type: ignore[arg-type]
        else:
            raise zigpy.exceptions.DeliveryError(f"addressing mode {target.addr_mode!r} is not supported")
        wants_ack = bool(packet.tx_options & t.TransmitOptions.ACK)
        delivered = await self._radio.send(
            dst=dst,
            dst_endpoint=int(packet.dst_ep or 0),
            src_endpoint=int(packet.src_ep or 0),
            profile=int(packet.profile_id or 0),
            cluster=int(packet.cluster_id),
            payload=bytes(packet.data.serialize()),
            ack=wants_ack,
            extended_timeout=bool(packet.extended_timeout),
        )
        if not delivered:
            raise zigpy.exceptions.DeliveryError(
                f"no acknowledgement from 0x{dst:04X}", status=t.MACStatus.MAC_NO_ACK
            )

    def _on_aps_data(self, ind: ApsIndication) -> None:
        dst: t.AddrModeAddress
        if ind.broadcast:
            dst = t.AddrModeAddress(addr_mode=t.AddrMode.Broadcast, address=t.BroadcastAddress(ind.dst_nwk))
        else:
            dst = t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(ind.dst_nwk))
        self.packet_received(
            t.ZigbeePacket(
                src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=t.NWK(ind.src_nwk)),
                src_ep=t.uint8_t(ind.src_endpoint),
                dst=dst,
                dst_ep=t.uint8_t(ind.dst_endpoint),
                profile_id=t.uint16_t(ind.profile),
                cluster_id=t.uint16_t(ind.cluster),
                data=t.SerializableBytes(ind.payload),
                # The emulated medium has no RF model yet: report a strong, clean link.
                lqi=t.uint8_t(255),
                rssi=t.int8s(-40),
            )
        )
