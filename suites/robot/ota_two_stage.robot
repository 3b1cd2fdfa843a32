*** Settings ***
Documentation     GBCS two-stage update: distribute the image first, activate it later on command.
...
...               Update Firmware (SR 11.1) puts the image on the device, which verifies it and keeps
...               running its old firmware; Activate Firmware (SR 11.3) switches it over. Here the hub
...               answers the device's Upgrade End Request with upgrade time 0xFFFFFFFF ("wait"),
...               checks the old version still runs, then sends the activation.
Library           harness.robot.OtaLibrary
Suite Setup       Start Testbed
Suite Teardown    Stop Testbed
Test Tags         ota    alt-han    gbcs    two-stage


*** Test Cases ***
Far-end bridge holds a verified image until told to activate it
    [Tags]    bridge    far-end
    ${image}=    Build Firmware Image    B2    1.3.0.0    size=64KiB    form=gbcs
    Offer Firmware Image    B2    ${image}    activation=on-command
    Wait Until Upgrade Completes    B2    budget=2h
    Firmware Version Should Be    B2    1.0.0.0
    Activate Firmware    B2
    Firmware Version Should Be    B2    1.3.0.0
    Device Should Be Reachable    GSME
