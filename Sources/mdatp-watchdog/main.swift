import Watchdog

WatchdogMain.main()
