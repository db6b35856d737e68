import MdatpCLI

MdatpCommand.main()
