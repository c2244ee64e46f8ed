from opencm.cli.main import main

main()
