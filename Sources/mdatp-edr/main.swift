import EDR

EDRRoom.main()
