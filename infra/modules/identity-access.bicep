// One server identity: Managed Identity Operator for the handler identity.
// The PATCH carries identity.userAssignedIdentities, and Resource Manager
// checks the caller may assign each identity it names.

@description('Principal id of the handler identity.')
param principalId string

@description('Name of the server\'s user-assigned identity, in this resource group.')
@minLength(3)
@maxLength(128)
param identityName string

var managedIdentityOperator = 'f1a07417-d97a-45cb-824c-7a7467783830'

resource serverIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

// Managed Identity Operator: assign (not change, not delete) this identity.
resource assignIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(serverIdentity.id, principalId, managedIdentityOperator)
  scope: serverIdentity
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', managedIdentityOperator)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
