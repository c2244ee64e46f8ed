from opencm.cli.lean import main

main()
