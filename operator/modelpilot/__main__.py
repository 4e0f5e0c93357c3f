from modelpilot.cli import main

main()
