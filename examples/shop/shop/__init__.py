"""An application that puts jobfleet to work: a web shop whose orders send receipts."""
