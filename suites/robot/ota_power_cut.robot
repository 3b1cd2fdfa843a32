*** Settings ***
Documentation     A power cut in the middle of a download must not brick a bridge or make it start over.
...
...               The far-end bridge B2 loses power half way through receiving its image. When power
...               returns it boots the old firmware from flash, rejoins, and resumes the download
...               where its flash says it stopped; then it upgrades as usual.
Library           harness.robot.OtaLibrary
Suite Setup       Start Testbed
Suite Teardown    Stop Testbed
Test Tags         ota    alt-han    power-cut


*** Test Cases ***
Far-end bridge resumes after a power cut mid-download
    [Tags]    bridge    far-end
    ${image}=    Build Firmware Image    B2    1.2.0.0    size=64KiB
    Offer Firmware Image    B2    ${image}
    Wait Until Transfer Reaches    B2    50%
    Cut Power    B2
    Wait Testbed Time    2min
    Restore Power    B2
    Wait Until Upgrade Completes    B2    budget=2h
    Transfer Should Have Resumed    B2
    Firmware Version Should Be    B2    1.2.0.0
    Device Should Be Reachable    GSME
