*** Settings ***
Documentation     Update the firmware of a P2P Alt HAN bridge pair and of the gas meter behind it.
...
...               On the default testbed the gas meter (GSME) is out of range of the Communications
...               Hub: the near-end bridge B1 by the CH and the far-end bridge B2 by the GSME carry
...               its traffic over their point-to-point link. The far-end bridge is updated first
...               (through B1), then the near-end bridge, then the sleepy GSME through both. Each
...               update is checked by reading the running version back over ZigBee, and the gas
...               meter must keep reporting its readings after its upgrade.
Library           harness.robot.OtaLibrary
Suite Setup       Start Testbed
Suite Teardown    Stop Testbed
Test Tags         ota    alt-han


*** Variables ***
${NEW_VERSION}    1.1.0.0
${IMAGE_SIZE}     200KiB


*** Test Cases ***
Far-end bridge B2 upgrades through the near-end bridge
    [Documentation]    B2 downloads a 200 KiB image relayed by B1 over the P2P link.
    [Tags]    bridge    far-end
    ${image}=    Build Firmware Image    B2    ${NEW_VERSION}    size=${IMAGE_SIZE}
    Offer Firmware Image    B2    ${image}
    Wait Until Upgrade Completes    B2    budget=2h
    Firmware Version Should Be    B2    ${NEW_VERSION}
    Device Should Be Reachable    GSME

Near-end bridge B1 upgrades
    [Documentation]    B1 downloads its image directly from the CH; the GSME must still be reachable after.
    [Tags]    bridge    near-end
    ${image}=    Build Firmware Image    B1    ${NEW_VERSION}    size=${IMAGE_SIZE}
    Offer Firmware Image    B1    ${image}
    Wait Until Upgrade Completes    B1    budget=2h
    Firmware Version Should Be    B1    ${NEW_VERSION}
    Device Should Be Reachable    GSME

Gas meter upgrades through both bridges
    [Documentation]    The sleepy GSME polls B2 for each block; the image crosses CH, B1, the P2P link and B2.
    ...                Its meter readings must keep coming after the upgrade: bindings and reporting
    ...                configuration live in flash and survive it.
    [Tags]    gsme    sleepy    reporting
    Configure Reporting    GSME    interval=5min
    ${image}=    Build Firmware Image    GSME    ${NEW_VERSION}    size=${IMAGE_SIZE}    form=gbcs
    Offer Firmware Image    GSME    ${image}
    Wait Until Upgrade Completes    GSME    budget=6h
    Firmware Version Should Be    GSME    ${NEW_VERSION}
    Device Should Keep Reporting    GSME
