*** Settings ***
Documentation     A power cut at any flash step of an install must never brick a bridge (goal G1).
...
...               Through each bridge's control port, a scratch copy of its flash installs a 16 KiB
...               image while the power is cut before, after and in the middle of every flash step
...               in turn, on the upgrade path (a good image) and the revert path (an image that
...               fails its self-test), then along 100 seeded sequences of several cuts. After each
...               cut the bridge powers up until it settles; the harness checks it is not bricked,
...               runs the image it must, holds both images intact (SHA-256) and reports consistent
...               boot flags. The bridges keep running their own firmware throughout.
Library           harness.robot.OtaLibrary
Suite Setup       Start Testbed
Suite Teardown    Stop Testbed
Test Tags         flash    power-cut    alt-han    g1


*** Test Cases ***
Near-end bridge survives a power cut at every flash step
    [Tags]    bridge    near-end
    Flash Power Fail Sweep    B1    image_size=16KiB    random_sequences=100

Far-end bridge survives a power cut at every flash step, its download included
    [Tags]    bridge    far-end
    Flash Power Fail Sweep    B2    image_size=16KiB    random_sequences=100    paths=upgrade,revert,download
