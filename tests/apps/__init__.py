"""Small apps the tests load by `module:attr`."""
