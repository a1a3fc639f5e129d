from rsir_cli.cli.app import main

main()
