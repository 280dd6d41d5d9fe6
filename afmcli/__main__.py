from afmcli.cli import main

main()
