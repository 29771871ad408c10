"""Pictures: matplotlib figures and composites/montages of crops. Computation lives in the other rooms; this
room only draws what they computed."""
