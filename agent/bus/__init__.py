"""The vehicle bus: serial SLCAN line -> CAN frames -> DBC signals -> roles -> VehicleState."""
