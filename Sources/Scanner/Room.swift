// This room's manifest is data the watchdog reads too, so it lives in
// MdatpRoom/Manifests/ScannerRoom.swift; this room installs it.
import MdatpRoom

let manifest = Rooms.scanner
