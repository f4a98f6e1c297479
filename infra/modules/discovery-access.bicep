// Server discovery in one subscription: the custom server reader role at
// subscription scope. A subscription-scope assignment needs a deployment
// at that scope, hence this module.
targetScope = 'subscription'

@description('Principal id of the handler identity.')
param principalId string

@description('Name (GUID) of the custom server reader role.')
@minLength(36)
@maxLength(36)
param roleDefinitionName string

// CMK rotation server reader: Resource Graph lists the servers whose key
// URIs name the rotated key, and the handler follows the updates it starts
// (their status URLs are at subscription scope); reads only flexible servers
// and PostgreSQL operation status.
resource discovery 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionName)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
