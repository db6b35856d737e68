import Collector

CollectorRoom.main()
