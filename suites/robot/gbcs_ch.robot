*** Settings ***
Documentation     GBCS two-stage firmware update through the Communications Hub under test.
...
...               On this testbed the CH is an emulated device, not the harness's hub: the harness
...               drives it over its control port as a head end does. Update Firmware (SR 11.1) has
...               the CH send the image to the far-end bridge B2, which verifies it (alert 0x8F72)
...               and keeps its old firmware; Activate Firmware (SR 11.3) names the image's hash and
...               B2 switches over (alert 0x8F43); Read Firmware Version (SR 11.2) reads it back
...               through the CH. The gas meter's version comes from the CH's Gas Proxy Function.
...
...               The suite starts its own testbed, ``testbeds/emulated-ch.yaml`` (override with
...               ``--variable CH_TESTBED:file``), whatever ``harness run --testbed`` names: its
...               keywords need a CH under test.
Library           harness.robot.OtaLibrary
Suite Setup       Start Testbed    ${CH_TESTBED}
Suite Teardown    Stop Testbed
Test Tags         ota    gbcs    two-stage    ch


*** Variables ***
${CH_TESTBED}     ${CURDIR}/../../testbeds/emulated-ch.yaml
${NEW_VERSION}    1.4.0.0


*** Test Cases ***
Far-end bridge takes a two-stage update from the CH
    [Documentation]    Update Firmware, verification alert, Activate Firmware, version change alert.
    [Tags]    bridge    far-end
    ${image}=    Build Firmware Image    B2    ${NEW_VERSION}    size=64KiB    form=gbcs
    CH Update Firmware    B2    ${image}
    Wait For CH Alert    0x8F72    B2    budget=2h
    ${before}=    CH Read Firmware Version    B2
    Should Be Equal    ${before}    0x01000000    B2 must keep its old firmware until activated
    CH Activate Firmware    B2
    ${alert}=    Wait For CH Alert    0x8F43    B2    budget=30min
    Should Be Equal    ${alert}[to_text]    ${NEW_VERSION}
    ${version}=    CH Read Firmware Version    B2
    Should Be Equal    ${version}    0x01040000

Gas meter version comes from the Gas Proxy Function
    [Documentation]    The GSME sleeps: the CH answers from the version the meter reported at its last wake.
    [Tags]    gsme    gpf
    ${version}=    CH Read Firmware Version    GSME
    Should Be Equal    ${version}    0x01000000
