*** Settings ***
Documentation     A ZigBee stack upgrade of the P2P Alt HAN bridge pair: the change that must never
...               knock a bridge, or the gas meter behind it, off the network.
...
...               The new bridge firmware runs ZigBee stack version 3 and P2P link protocol 2. The
...               far-end bridge B2 is upgraded first, so for a while the pair runs different
...               firmware (version skew): the gas meter must stay reachable throughout, each bridge
...               must come back by a secure rejoin with the key it stored (not a trust-centre
...               rejoin), and the meter's readings must keep coming once both are upgraded.
Library           harness.robot.OtaLibrary
Suite Setup       Start Testbed
Suite Teardown    Stop Testbed
Test Tags         ota    alt-han    stack-upgrade


*** Variables ***
${NEW_VERSION}      2.0.0.0
${NEW_STACK}        3
${NEW_P2P}          2
${IMAGE_SIZE}       64KiB


*** Test Cases ***
Far-end bridge takes the new stack first while the near end runs the old one
    [Tags]    bridge    far-end    skew
    Configure Reporting    GSME    interval=5min
    ${image}=    Build Firmware Image    B2    ${NEW_VERSION}    size=${IMAGE_SIZE}
    ...    stack_version=${NEW_STACK}    p2p_protocol=${NEW_P2P}
    Offer Firmware Image    B2    ${image}
    Wait Until Upgrade Completes    B2    budget=2h
    Firmware Version Should Be    B2    ${NEW_VERSION}
    Device Should Be Reachable    GSME

Near-end bridge takes the new stack and the meter stays reachable through the pair
    [Tags]    bridge    near-end
    ${image}=    Build Firmware Image    B1    ${NEW_VERSION}    size=${IMAGE_SIZE}
    ...    stack_version=${NEW_STACK}    p2p_protocol=${NEW_P2P}
    Offer Firmware Image    B1    ${image}
    Wait Until Upgrade Completes    B1    budget=2h
    Firmware Version Should Be    B1    ${NEW_VERSION}
    Device Should Be Reachable    GSME
    Device Should Keep Reporting    GSME
