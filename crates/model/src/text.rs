//! Closed sets of values written as text (in the database, on the wire,
//! in history): one macro, so each set's names, parser and error agree.

/// A text value that is not one of the values of a closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what}: expected one of {expected}")]
pub struct UnknownValue {
    /// What the value should have been (`"practice status"`).
    pub what: &'static str,
    /// The value found, cut to 64 characters.
    pub value: String,
    /// The values accepted.
    pub expected: &'static str,
}

/// An enum of unit variants, each with its text: `as_str`, `ALL`,
/// `Display` and `FromStr` (refusing anything else with [`UnknownValue`]).
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal, { $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as written.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::UnknownValue {
                        what: $what,
                        value: s.chars().take(64).collect(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}
