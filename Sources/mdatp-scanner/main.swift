import Scanner

ScannerRoom.main()
